"""The store's exceptions, in a module of their own: the CLI's error handling catches them
without importing a store (importing the hit pipeline costs the `link` command its speed).

Exceptions::

    StoreError
     └── StoreUnavailable   transient: locked, busy, read-only, disk full, I/O error,
                            PostgreSQL unreachable. The writer keeps the batch and retries it.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The store cannot take writes (or answer reads) right now; retrying later may succeed."""
