"""Thin adapters that plug azfed into Nova. Importable only where Nova is installed."""
