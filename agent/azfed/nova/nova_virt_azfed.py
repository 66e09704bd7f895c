"""Install this file as `nova/virt/azfed.py` in Nova's site-packages (see docs/driver.md).

Nova loads `compute_driver` only from its own `nova.virt` package (it imports
`nova.virt.<compute_driver>`), so out-of-tree drivers ship a one-line shim there, as
nova-zvm and nova-dpm do. With it, `compute_driver = azfed.FederationDriver`.
"""

from azfed.nova.driver import FederationDriver

__all__ = ["FederationDriver"]
