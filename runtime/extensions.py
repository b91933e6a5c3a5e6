"""Runtime extensions: plugins that hear about every step execution.

They implement :class:`runtime.hooks.RuntimeSpec` and register through the
``wtm.extensions`` entry point group (or :func:`register` in-process). Hooks
run where the step runs (the local pool or a Celery worker); an extension
that raises is logged and never fails the step.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import pluggy

from runtime.hooks import PROJECT, RuntimeSpec

ENTRY_POINT_GROUP = "wtm.extensions"
log = logging.getLogger("wtm.extensions")


@cache
def manager() -> pluggy.PluginManager:
    """The process-wide manager of runtime extensions (entry points loaded once)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(RuntimeSpec)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def register(plugin: object, name: str | None = None) -> None:
    """Add an extension in this process."""
    manager().register(plugin, name=name)


def unregister(plugin: object) -> None:
    """Remove an extension added with :func:`register`."""
    manager().unregister(plugin)


def notify(hook: str, **kwargs: Any) -> None:
    """Call ``hook`` on every extension, each on its own: one that raises is logged and the
    others still hear about the step."""
    for impl in getattr(manager().hook, hook).get_hookimpls():
        try:
            impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:
            log.exception("runtime extension %s failed in %s", impl.plugin_name, hook)
