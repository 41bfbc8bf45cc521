"""Shared fixtures: one real local Ray for the session (with this machine's network settings), a tiny real zoo."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from selkd_ray.collector import lean_collector

lean_collector()  # the suite's own process imports torch, timm and POT too, as the command's does

# The settings of ray-local-env.sh, applied here too: nothing may leave this machine.
os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
                   "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "HF_HUB_OFFLINE": "1",
                   "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"})
bootstrap = Path.home() / "ray_bootstrap_config.yaml"
if not bootstrap.exists():
    bootstrap.write_text("{}\n")


@pytest.hookimpl(trylast=True)  # after pytest-reverse's order: the background jobs' tests stay last either way
def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run wherever torch sees a CUDA device and are skipped, with the reason, elsewhere.
    Tests marked `background` go last; their jobs are queued now and run beside the suite (helpers/background.py)."""
    import torch

    from helpers import background

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU: torch sees none here (bench/gpu.py runs these on a GPU "
                                       "machine)")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
    beside = [item for item in items if item.get_closest_marker("background")]
    items[:] = [item for item in items if item not in beside] + beside
    jobs, lanes = {}, {}
    for marker in (item.get_closest_marker("background") for item in beside):
        for name, argv in marker.kwargs.get("after", ()):  # a job whose output this one reads goes first
            jobs.setdefault(name, argv)
        jobs.setdefault(marker.args[0], marker.args[1:])
        lanes[marker.args[0]] = marker.kwargs.get("lane", "bench")
    if jobs:
        if len(beside) == len(items):  # nothing else runs: no shared fixture to wait for
            background.begin()
        background.start_all(jobs, lanes)


SESSION_START = time.monotonic()
MACHINE_CPU = open("/proc/stat").readline().split()[1:] if os.path.exists("/proc/stat") else None


def machine_busy(beside_s: float = 0.0) -> str:
    """How busy the machine's cores were over the session (/proc/stat): near 100% means only less work makes
    the suite faster; well below, more of it could run side by side (issue 43). `beside_s`: the jobs beside the
    suite's CPU-seconds, the rest is the tests' own (and whatever else the machine ran)."""
    if MACHINE_CPU is None:
        return ""
    now = open("/proc/stat").readline().split()[1:]
    spent = [int(b) - int(a) for a, b in zip(MACHINE_CPU, now)]
    idle = spent[3] + spent[4]  # idle + iowait
    cores, wall = os.cpu_count() or 1, time.monotonic() - SESSION_START
    return (f"machine: {100 * (1 - idle / max(sum(spent), 1)):.0f}% of {cores} core(s) busy over {wall:.0f} s "
            f"({(sum(spent) - idle) / os.sysconf('SC_CLK_TCK'):.0f} CPU-seconds, every process of the machine; "
            f"{beside_s:.0f} of them the jobs beside the suite)")


def pytest_terminal_summary(terminalreporter):
    """How long each job beside the suite ran, and when: the suite's wall time is theirs too; and how busy the
    machine was."""
    from helpers import background

    lines = background.timings(SESSION_START)
    if lines:
        terminalreporter.write_sep("=", "jobs beside the suite")
        for line in lines:
            terminalreporter.write_line(line)
    busy = machine_busy(background.cpu_seconds())
    if busy:
        terminalreporter.write_line(busy)


def pytest_sessionfinish(session, exitstatus):
    from helpers import background

    background.stop_all()


WORK_SLOTS = 2  # the CPU slots every test works with: two num_cpus=1 actors take them all, as on a 2-core machine
POOL_SLOTS = 1  # declared beside them for the suite's one runner pool (idle between scans)
SHARED: dict = {}  # what the session's Ray holds for every test: its runner pool


@pytest.fixture(scope="session")
def ray_session():
    """One Ray for the suite, and in it one runner actor that in-process scans share (`scan_here`): an actor
    starts in seconds here, and about twenty scans would each start their own. The pool's slot is declared on
    top of the two the tests work with, and held from the start, so every test sees the same free slots
    whatever ran before it."""
    import ray

    from helpers import background, killing
    from selkd_ray.distributed.runtime import connect
    from selkd_ray.distributed.runners import RunnerPool

    started_before = ray.is_initialized()
    connect(num_cpus=WORK_SLOTS + POOL_SLOTS)
    slots = ray.cluster_resources().get("CPU")
    if slots != WORK_SLOTS + POOL_SLOTS:  # a test connected in-process without this fixture: every count is off
        pytest.fail(f"the suite's Ray has {slots} CPU slots, expected {WORK_SLOTS + POOL_SLOTS} (started before "
                    f"this fixture: {started_before})", pytrace=False)
    pool = RunnerPool(max_actors=POOL_SLOTS).ready()
    killing.HELD_SLOTS = POOL_SLOTS
    SHARED["runner_pool"] = pool
    background.begin()  # the jobs beside the suite may start: its start-up (zoo, Ray, pool) is done
    yield ray
    pool.close()
    ray.shutdown()


@pytest.fixture(scope="session")
def runner_pool(ray_session):
    """The suite's one runner pool (see ray_session)."""
    return SHARED["runner_pool"]


@pytest.fixture
def scan_here(runner_pool):
    """`scan` on the shared runner pool, for tests that are not about the runner actors themselves."""
    import functools

    from selkd_ray.api import scan

    return functools.partial(scan, runners=runner_pool)


@pytest.fixture(scope="session")
def target_task():
    from selkd_ray.demo.data import target_task as make

    return make()


@pytest.fixture(scope="session")
def task_path(tmp_path_factory, target_task):
    from selkd_ray.io.tasks import write_task

    from helpers import background

    path = write_task(target_task, tmp_path_factory.mktemp("task") / "task.parquet")
    background.provide("task", path)  # for the jobs beside the suite that read it (helpers/background.py)
    return path


TINY_RECIPES = {
    # the target's own digits under other names: must rank first
    "own-classes": {"x-three": (3,), "x-five": (5,), "x-eight": (8,)},
    "digits-01": {"zero": (0,), "one": (1,)},
    "random": {"a": (0, 1, 2, 3, 4), "b": (5, 6, 7, 8, 9)},
}


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """Three teachers really trained (two epochs, seconds each) and saved as timm folders."""
    from selkd_ray.demo.data import MNIST_MEAN, MNIST_STD
    from selkd_ray.demo.zoo import TeacherRecipe, recipe_data, train_classifier
    from selkd_ray.models.timm_models import save_teacher

    zoo = tmp_path_factory.mktemp("zoo")
    for index, (name, groups) in enumerate(TINY_RECIPES.items()):
        recipe = TeacherRecipe(name, groups, random_labels=(name == "random"))
        images, labels = recipe_data(recipe)
        arch = ("test_resnet", "test_efficientnet")[index % 2]
        model = train_classifier(arch, images, labels, len(groups), epochs=2, seed=index)
        save_teacher(model, zoo / name, tuple(groups), (1, 28, 28), MNIST_MEAN, MNIST_STD)
    from helpers import background

    background.provide("zoo", zoo)  # for the jobs beside the suite that read it (helpers/background.py)
    return zoo


@pytest.fixture
def zoo_copy(tiny_zoo, tmp_path) -> Path:
    """A private copy of the tiny zoo that a test may break."""
    import shutil

    return Path(shutil.copytree(tiny_zoo, tmp_path / "zoo"))


@pytest.fixture(scope="session")
def wide_zoo(tiny_zoo, tmp_path_factory) -> Path:
    """Nine distinct teachers: each tiny teacher three times, weights nudged so every copy hashes apart."""
    import shutil

    from safetensors.torch import load_file, save_file

    zoo = tmp_path_factory.mktemp("wide")
    for teacher in sorted(p for p in tiny_zoo.iterdir() if p.is_dir()):
        for copy in range(3):
            folder = Path(shutil.copytree(teacher, zoo / f"{teacher.name}-{copy}"))
            weights = load_file(folder / "model.safetensors")
            first = next(k for k, v in weights.items() if v.is_floating_point())
            weights[first] = weights[first] + 1e-5 * copy
            save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return zoo
