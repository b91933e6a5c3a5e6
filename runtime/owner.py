"""Which process drives a run, and whether that process still exists on this host.

A process is named ``host:pid:start``, where ``start`` is its start time in clock
ticks since boot (``/proc/PID/stat``), so a reused PID is not mistaken for it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def host_pid(pid: int | None = None) -> str:
    """``host:pid`` of process ``pid`` on this host (this process by default): how step
    records, leases and worker node records name a process."""
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def this_process() -> str:
    """This process's name, with its start time."""
    pid = os.getpid()
    return f"{host_pid(pid)}:{_start_ticks(pid) or ''}"


def gone(owner: str) -> bool | None:
    """True if process ``owner`` has ended, False if it runs, None if it is on another
    host (or this system cannot tell)."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or not start:
        return None
    found = _start_ticks(int(pid_text))
    if found is None and not Path("/proc/self/stat").exists():
        return None
    return found != start
