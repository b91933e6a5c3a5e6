"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TASKS = FIXTURES / "tasks"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def tasks_dir() -> Path:
    """Folder of test plugin folders (twins of the face plugins with the same ports)."""
    return TASKS
