"""Hit stores: the protocol, SQLite (default) and an in-memory store for tests."""

from .base import Store, StoreError, StoreUnavailable

__all__ = ["Store", "StoreError", "StoreUnavailable"]
