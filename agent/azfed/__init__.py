"""azfed: burst a private OpenStack into a public cloud through an extra availability zone."""

__version__ = "0.1.0"
