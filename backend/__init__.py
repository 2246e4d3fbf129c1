"""Workdeck's backend: the server that owns the store, the SSH connections and the checks."""

__version__ = "0.1.0"
