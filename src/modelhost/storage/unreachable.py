"""The error of a state store server that cannot be reached at start.

Its own module so `modelhost server` can name it without importing a database driver."""

from __future__ import annotations


class StoreUnreachable(RuntimeError):
    """The state store's database cannot be reached (or used) at start: one line naming
    it, without its password; the server exits with status 2."""
