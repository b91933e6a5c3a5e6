"""Opening the configured services for a command, with one-line errors."""

from __future__ import annotations

from typing import Any

from runtime.cli.output import fail
from runtime.config import ConfigError, Settings
from runtime.services import Services
from runtime.stores.errors import StoreError


def open_services(**overrides: Any) -> Services:
    """The configured stores, or exit 2 with a one-line reason."""
    try:
        return Services.open(Settings.load(overrides))
    except (ConfigError, StoreError) as exc:
        fail(str(exc))
