"""pluggy hook specifications: the contract between wtm and its plugins.

A task plugin is a module that implements :func:`TaskSpec.wtm_task_run`::

    from runtime import hookimpl

    @hookimpl
    def wtm_task_run(inputs, context):
        return {"greeting": f"hello {inputs['name']}"}

Runtime extensions (lineage recorders, the dashboard feed) implement the
:class:`RuntimeSpec` hooks to hear about every step of every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runtime.context import TaskContext

PROJECT = "wtm"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TaskSpec:
    """Hooks a task plugin implements."""

    @hookspec(firstresult=True)
    def wtm_task_run(self, inputs: Mapping[str, Any], context: TaskContext) -> dict[str, Any]:  # type: ignore[empty-body]
        """Run the task on validated ``inputs`` and return its outputs by port name."""

    @hookspec
    def wtm_task_setup(self) -> None:
        """Prepare the task once per process, before its first step (load its models). wtm
        calls it when the plugin is loaded, outside any step's time; optional."""


class RuntimeSpec:
    """Hooks a runtime extension implements; called by every executor."""

    @hookspec
    def wtm_step_started(self, run_id: str, step_id: str, attempt: int) -> None:
        """A step execution began."""

    @hookspec
    def wtm_step_finished(
        self, run_id: str, step_id: str, outputs: Mapping[str, Any], seconds: float
    ) -> None:
        """A step execution returned outputs that passed validation."""

    @hookspec
    def wtm_step_failed(self, run_id: str, step_id: str, error: str, attempt: int) -> None:
        """A step execution raised or produced invalid outputs."""


def task_plugin_manager(module: object, name: str) -> pluggy.PluginManager:
    """A plugin manager holding one task module, checked to implement the run hook."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(TaskSpec)
    manager.register(module, name=name)
    manager.check_pending()
    if not manager.hook.wtm_task_run.get_hookimpls():
        raise TypeError(f"{name}: does not implement the wtm_task_run hook")
    return manager
