"""Keep tests off the user's caches: the feature cache goes to a per-session temp folder
(inherited by every subprocess the tests start). Under pytest-xdist each worker gets its share
of the cores."""
import os

import pytest
import torch

from tests.machine_speed import slowdown


def _share_cores_between_workers():
    """With `-n N` workers, torch threads of every worker would fight over the same cores,
    and small ops then wait on each other (a CoOp step took 20x longer with 2 processes of 2
    threads on 2 cores than with 1 thread each). Subprocesses inherit the setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_cores_between_workers()


@pytest.fixture(autouse=True, scope="session")
def _isolated_feature_cache(tmp_path_factory):
    old = os.environ.get("FEWSHOT_FEATURE_CACHE")
    os.environ["FEWSHOT_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("FEWSHOT_FEATURE_CACHE", None)
    else:
        os.environ["FEWSHOT_FEATURE_CACHE"] = old


def _base_timeout(config):
    try:
        value = config.getoption("timeout", None) or config.getini("timeout")
        return float(value) if value else None
    except (ValueError, TypeError):
        return None


def pytest_report_header(config):
    return f"machine slowdown {slowdown()}x: per-test time limits and subprocess timeouts scaled by it"


# scripts/test.sh runs the files in parallel (pytest-xdist): every file is one unit, run whole by
# one worker, so its module fixtures (the goldens' training runs) are built once; the files in
# SPREAD_MODULES are independent train.py runs per test, spread over the workers one by one.
SPREAD_MODULES = ("tests/test_resume_every_method.py", "tests/test_open_clip_methods.py")


def pytest_xdist_make_scheduler(config, log):
    """The scheduler described above. (xdist's own `--dist loadgroup` cannot do it on pytest 9:
    it marks a test's group by rewriting `item._nodeid`, which pytest 9 no longer reads, so
    every test became its own unit and each module fixture was built on both workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPREAD_MODULES else path

    return FileScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The per-test limit (pytest.ini) holds on the reference machine; on a loaded or slower
    one it stretches by the measured slowdown, so a slow machine is not a failing suite."""
    base = _base_timeout(config)
    if not base:
        return
    limit = int(base * slowdown())
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))
