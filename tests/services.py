"""Real services for tests: a private redis-server and `wtm worker` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary; skips the test without one, or fails it when ``$CI`` is set.

    CI must run every test: there a missing binary is a broken setup, not a reason to skip.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        why = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so the celery tests must run", pytrace=False)
        pytest.skip(why)
    return binary


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port (never the shared one); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


MOTO_SERVER = """
import logging, sys
logging.getLogger("werkzeug").disabled = True
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("%s:%s" % server.get_host_and_port(), flush=True)
sys.stdin.read()  # serve until the tests close stdin (or die)
server.stop()
"""


@contextmanager
def s3_server() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of moto's S3 server, a real S3-protocol server on loopback.

    It runs in a child process: moto keeps every object in memory, and some tests measure
    this process's memory.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", MOTO_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        address = child.stdout.readline().strip()
        if not address:
            pytest.fail("moto's S3 server did not start")
        yield f"http://{address}"
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def start_worker(
    broker: str,
    env: Mapping[str, str],
    log: Path,
    concurrency: int = 2,
    name: str = "w1",
    options: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """A real `wtm worker` process (with ``options`` added), returned once it answers a
    ping."""
    from runtime.executors.celery_app import make_app

    full_env = {**os.environ, **env, "WTM_BROKER_URL": broker}
    handle = open(log, "ab")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "worker",
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "-l",
            "INFO",
            *options,
        ],
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    app = make_app(broker)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"wtm worker exited: {log.read_text()[-2000:]}")
            if app.control.ping(timeout=0.5):
                return process
        raise RuntimeError(f"wtm worker did not answer: {log.read_text()[-2000:]}")
    except BaseException:  # a broker error while waiting too: never leave it running
        stop_worker(process, signal.SIGKILL)
        raise


def stop_worker(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a worker and its pool children."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
