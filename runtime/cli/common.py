"""Opening the configured services for a command, with one-line errors."""

from __future__ import annotations

import math
from typing import Any

import click

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


class Seconds(click.FloatRange):
    """A finite number of seconds within a range (``FloatRange`` lets ``nan`` through,
    and ``inf`` when there is no maximum)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number
