"""wtm: Worker Task Manager, a plugin runtime for AI task pipelines."""

from runtime.hooks import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
