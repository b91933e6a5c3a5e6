"""Building the app under test."""

from __future__ import annotations

import os
from typing import Any

from tests.tui.conftest import Bench
from tui.app import DashboardApp

INTERVAL = 0.1


def dashboard(bench: Bench, **kwargs: Any) -> DashboardApp:
    """The dashboard on ``bench``'s store, polling fast, re-running in ``bench``'s folder."""
    options: dict[str, Any] = {
        "interval": INTERVAL,
        "workdir": bench.folder,
        "rerun_env": {**os.environ, "WTM_HOME": str(bench.home)},
    }
    options.update(kwargs)
    return DashboardApp(bench.open_services, **options)
