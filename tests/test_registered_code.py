"""Workers run only registered code (issue 13): a forged pin fails its step and imports
nothing, and a changed plugin cache is noticed before its code runs.

Each attack plants code that writes a marker file when it is imported; the marker
must never appear. Stores, caches, imports and the Celery worker are all real.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.context import TaskContext
from runtime.executors.calls import WHOLE, StepCall, TaskPin
from runtime.executors.celery_app import make_app
from runtime.executors.plan import RunPlan, StepPlan
from runtime.executors.redis_runs import Envelope, RedisRuns
from runtime.executors.runner import StepFailed, run_call
from runtime.executors.runstate import RunState
from runtime.loader import LoadedTask, Loader, PackageRefused, forget_plugin
from runtime.packaging import build_package
from runtime.services import Services
from runtime.stores.artifacts import put_blob
from runtime.stores.metadata import RunRecord
from runtime.values import encode
from tests.conftest import TASKS
from tests.helpers_plugins import (
    GREET,
    copy_plugin,
    forget_modules,
    make_distribution,
    make_plugin,
    open_services,
    plugin_modules,
    settings,
)
from tests.services import redis_server, start_worker, stop_worker

EVIL_MODULE = "wtm_test_evil"


def evil_code(marker: Path) -> str:
    """A plugin (or module) that leaves ``marker`` behind as soon as it is imported."""
    return (
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from runtime import hookimpl\n\n\n"
        "@hookimpl\n"
        "def wtm_task_run(inputs, context):\n"
        "    return {'greeting': 'pwned', 'sum': 0}\n"
    )


@pytest.fixture(autouse=True)
def _isolated_modules() -> Iterator[None]:
    before = plugin_modules()
    yield
    forget_modules(before, EVIL_MODULE, "wtm_test_hello")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with open_services(tmp_path / "home") as opened:
        yield opened


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "imported.txt"


def evil_blob(services: Services, folder: Path, marker: Path) -> str:
    """A valid plugin package uploaded as a plain blob, as any input file can be."""
    plugin = make_plugin(folder, name="greet", code=evil_code(marker))
    return put_blob(services.artifacts, build_package(plugin).data)


def greeting(loaded: LoadedTask, services: Services) -> str:
    return str(loaded.run({"name": "Al"}, TaskContext("run-1", "001", services.access))["greeting"])


def cache_files(services: Services) -> list[str]:
    cache = services.settings.cache_dir
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


# --- the pin: name@version -> the digest the registry records


def test_a_pin_naming_a_blob_that_is_not_the_registered_package_is_refused(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    services.registry.install(copy_plugin(GREET, tmp_path / "greet"))
    digest = evil_blob(services, tmp_path / "evil", marker)
    with pytest.raises(PackageRefused) as refused:
        services.loader.load_pinned("greet", "1.0.0", digest)
    assert str(refused.value) == (
        f"package sha256:{digest[:12]} is not the one registered for greet@1.0.0"
    )
    with pytest.raises(PackageRefused, match=r"\(nothing@1\.0\.0 is not installed\)$"):
        services.loader.load_pinned("nothing", "1.0.0", digest)
    assert not marker.exists()
    assert cache_files(services) == []  # nothing fetched, nothing unpacked


@pytest.mark.parametrize(
    "digest", ["../../../evil", "/tmp", "", "A" * 64, "sha256:" + "a" * 64, "a" * 63 + "\n"]
)
def test_a_pin_whose_digest_is_not_a_digest_is_refused(
    services: Services, tmp_path: Path, marker: Path, digest: str
) -> None:
    make_plugin(tmp_path / "evil", name="greet", code=evil_code(marker))
    services.registry.install(copy_plugin(GREET, tmp_path / "greet"))
    with pytest.raises(PackageRefused) as refused:
        services.loader.load_pinned("greet", "1.0.0", digest)
    assert str(refused.value) == f"package {digest!r} is not a sha256 digest"
    with pytest.raises(PackageRefused):
        services.loader.load(digest)  # the lower-level load checks the form too
    assert not marker.exists()


def test_a_pip_pin_loads_only_modules_of_the_entry_point_group(
    services: Services, tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{EVIL_MODULE}.py").write_text(evil_code(marker))
    make_distribution(site, "wtm_test_hello")
    monkeypatch.syspath_prepend(site)
    for module in (EVIL_MODULE, "os"):
        with pytest.raises(PackageRefused) as refused:
            services.loader.load_pinned("greet", "1.0.0", f"pip:{module}")
        assert str(refused.value) == (
            f"cannot import pip plugin {module!r}: no module of that name is registered "
            "in the wtm.plugins entry point group"
        )
    assert not marker.exists() and EVIL_MODULE not in sys.modules
    loaded = services.loader.load_pinned("hello_pip", "1.0.0", "pip:wtm_test_hello")
    assert loaded.manifest.key == "hello_pip@1.0.0"
    with pytest.raises(PackageRefused, match=r"is hello_pip@1\.0\.0, not greet@1\.0\.0$"):
        services.loader.load_pinned("greet", "1.0.0", "pip:wtm_test_hello")


def test_a_run_finishes_on_the_package_it_pinned_after_a_forced_reinstall(
    services: Services, tmp_path: Path
) -> None:
    folder = copy_plugin(GREET, tmp_path / "greet")
    old = services.registry.install(folder).record
    services.metadata.create_run(RunRecord("run-1", "p", "1.0.0", plugins=[old.ref]))
    (folder / "plugin.py").write_text((folder / "plugin.py").read_text().replace("Hello", "Hi"))
    services.registry.install(folder, force=True)
    with pytest.raises(PackageRefused, match=r"is not the one registered for greet@1\.0\.0$"):
        services.loader.load_pinned("greet", "1.0.0", old.digest, "run-2")
    loaded = services.loader.load_pinned("greet", "1.0.0", old.digest, "run-1")
    assert greeting(loaded, services) == "Hello, Al!"


def test_a_pin_is_looked_up_once_per_process(services: Services, tmp_path: Path) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    first = services.loader.load_pinned("greet", "1.0.0", record.digest)
    services.metadata.remove_plugin("greet", "1.0.0")  # a lookup now would refuse it
    assert services.loader.load_pinned("greet", "1.0.0", record.digest) is first
    fresh = Loader(services.artifacts, services.settings.cache_dir, metadata=services.metadata)
    with pytest.raises(PackageRefused):
        fresh.load_pinned("greet", "1.0.0", record.digest)


def test_a_refused_pin_fails_its_step_with_one_line_and_runs_nothing(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    digest = evil_blob(services, tmp_path / "evil", marker)
    pin = TaskPin(record.name, record.version, digest)
    call = StepCall("run-x", "001", WHOLE, pin, {"name": {"id": "d", "size": 4, "value": "Al"}})
    with pytest.raises(StepFailed) as failed:
        run_call(call, services)
    reason = (
        f"step 001 (greet@1.0.0): package sha256:{digest[:12]} "
        "is not the one registered for greet@1.0.0"
    )
    assert str(failed.value) == reason
    step = services.metadata.get_step("run-x", "001")
    assert step is not None and (step.status, step.error) == ("failed", reason)
    assert not marker.exists()


# --- the cache: checked against the package once in every process


def fresh_loader(services: Services, digest: str) -> Loader:
    """What a new worker process on the same cache would have."""
    forget_plugin(f"p{digest[:24]}")
    return Loader(services.artifacts, services.settings.cache_dir, metadata=services.metadata)


def test_an_edited_plugin_in_the_cache_is_refused_by_the_next_process(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    folder = services.loader.load_pinned("greet", "1.0.0", record.digest).folder
    (folder / "plugin.py").write_text(evil_code(marker))
    (folder / "__init__.py").write_text(evil_code(marker))
    (folder / "manifest.yaml").unlink()
    with pytest.raises(PackageRefused) as refused:
        fresh_loader(services, record.digest).load_pinned("greet", "1.0.0", record.digest)
    assert str(refused.value) == (
        f"{folder} differs from package sha256:{record.digest[:12]} (__init__.py added, "
        "plugin.py changed, manifest.yaml missing); delete that folder to have it unpacked again"
    )
    assert not marker.exists()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()  # as the message says: unpacked again, from the verified package
    loaded = fresh_loader(services, record.digest).load_pinned("greet", "1.0.0", record.digest)
    assert greeting(loaded, services) == "Hello, Al!"


def test_a_symlink_in_the_cached_plugin_is_refused(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    folder = services.loader.load_pinned("greet", "1.0.0", record.digest).folder
    elsewhere = make_plugin(tmp_path / "elsewhere", code=evil_code(marker))
    (folder / "plugin.py").unlink()
    (folder / "plugin.py").symlink_to(elsewhere / "plugin.py")
    (folder / "lib").symlink_to(elsewhere)
    with pytest.raises(PackageRefused, match=r"\(lib is a symlink, plugin\.py is a symlink\)"):
        fresh_loader(services, record.digest).load_pinned("greet", "1.0.0", record.digest)
    assert not marker.exists()


def test_a_replaced_package_in_the_cache_is_fetched_again(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    folder = services.loader.load_pinned("greet", "1.0.0", record.digest).folder
    package = services.settings.cache_dir / "packages" / record.digest
    evil = build_package(make_plugin(tmp_path / "evil", name="greet", code=evil_code(marker)))
    package.write_bytes(evil.data)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    loaded = fresh_loader(services, record.digest).load_pinned("greet", "1.0.0", record.digest)
    assert greeting(loaded, services) == "Hello, Al!"
    assert not marker.exists()
    assert package.read_bytes() == services.artifacts.get_bytes(record.object_key)


def test_a_forged_byte_code_file_in_the_cache_is_never_run(
    services: Services, tmp_path: Path, marker: Path
) -> None:
    """Python runs a ``__pycache__`` file whose header gives the source's mtime and size;
    plugin code is compiled from the checked source instead."""
    record = services.registry.install(copy_plugin(GREET, tmp_path / "greet")).record
    folder = services.loader.load_pinned("greet", "1.0.0", record.digest).folder
    source = folder / "plugin.py"
    assert not (folder / "__pycache__").exists()  # the loader writes no byte code either
    stat = source.stat()
    forged = Path(importlib.util.cache_from_source(str(source)))
    forged.parent.mkdir()
    forged.write_bytes(
        importlib.util.MAGIC_NUMBER
        + (0).to_bytes(4, "little")
        + int(stat.st_mtime).to_bytes(4, "little")
        + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
        + marshal.dumps(compile(evil_code(marker), str(source), "exec"))
    )
    loaded = fresh_loader(services, record.digest).load_pinned("greet", "1.0.0", record.digest)
    assert greeting(loaded, services) == "Hello, Al!"
    assert not marker.exists()


# --- the same on a real Celery worker, with plans written straight into Redis


@pytest.fixture(scope="module")
def attacked_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A private redis-server and a `wtm worker` whose path holds a module that leaves a
    marker when imported; ``add`` is installed. Yields the broker, the home and a folder
    where attacks plant code."""
    folder = tmp_path_factory.mktemp("attacked")
    home, site = folder / "home", folder / "site"
    site.mkdir()
    (site / f"{EVIL_MODULE}.py").write_text(evil_code(site / "pip-imported.txt"))
    with Services.open(settings(home)) as opened:
        opened.registry.install(TASKS / "add")
    env = {"WTM_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    with redis_server(folder) as broker:
        worker = start_worker(broker, env, folder / "worker.log", concurrency=1)
        try:
            yield broker, home, site
        finally:
            stop_worker(worker)


def send_forged_run(broker: str, services: Services, run_id: str, digest: str) -> None:
    """What someone who can write to Redis could do: store a one-step plan pinning ``add``
    to ``digest``, and publish the step's message. No run is recorded anywhere else."""
    pin = TaskPin("add", "1.0.0", digest)
    bindings = {"a": {"value": encode(1, services.access, 1024).to_json()}}
    step = StepPlan("001", pin, (), bindings, ("sum",), (), ())
    plan = RunPlan("forged@1.0.0", {"001": step}, {"sum": {"ref": "output_001_sum"}}, 1024)
    state = RunState.new(run_id, plan, {})
    [call] = state.start(plan, services.access).calls
    RedisRuns.at(broker).create(state, Envelope(plan, None))
    make_app(broker).send_task("wtm.step", args=(run_id, call.key, call.attempt))


def step_outcome(services: Services, run_id: str, timeout: float = 30) -> tuple[str, str | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = services.metadata.get_step(run_id, "001")
        if step is not None and step.status in ("succeeded", "failed"):
            return step.status, step.error
        time.sleep(0.05)
    raise AssertionError(f"step 001 of {run_id} did not end within {timeout}s")


@pytest.mark.celery
def test_a_worker_runs_only_registered_code_whatever_redis_says(
    attacked_worker: tuple[str, Path, Path],
) -> None:
    broker, home, site = attacked_worker
    with Services.open(settings(home)) as services:
        registered = services.registry.resolve("add").digest
        blob = evil_blob(services, site / "blob_plugin", site / "blob-imported.txt")
        planted = make_plugin(site / "planted", name="add", code=evil_code(site / "planted.txt"))
        traversal = os.path.relpath(planted, services.settings.cache_dir / "plugins")
        attacks = {
            "blob": (blob, f"package sha256:{blob[:12]} is not the one registered for add@1.0.0"),
            "path": (traversal, f"package {traversal!r} is not a sha256 digest"),
            "pip": (
                f"pip:{EVIL_MODULE}",
                f"cannot import pip plugin {EVIL_MODULE!r}: no module of that name is "
                "registered in the wtm.plugins entry point group",
            ),
        }
        for name, (digest, _) in attacks.items():
            send_forged_run(broker, services, f"forged-{name}", digest)
        send_forged_run(broker, services, "forged-control", registered)
        assert step_outcome(services, "forged-control") == ("succeeded", None)
        for name, (_, reason) in attacks.items():
            assert step_outcome(services, f"forged-{name}") == (
                "failed",
                f"step 001 (add@1.0.0): {reason}",
            )
        assert sorted(p.name for p in site.glob("*.txt")) == []
        cached = sorted(p.name for p in (services.settings.cache_dir / "plugins").iterdir())
        assert cached == [registered]
