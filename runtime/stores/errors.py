"""Errors every store backend raises, whatever it is built on."""

from __future__ import annotations


class StoreError(Exception):
    """A store could not do what was asked (unreachable, misconfigured, busy for too long)."""


class NotFound(StoreError):
    """The key or record asked for does not exist."""


class Conflict(StoreError):
    """A record with the same unique key already exists."""


class IntegrityError(StoreError):
    """Stored bytes do not match the digest they are stored under."""
