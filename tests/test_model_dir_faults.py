"""Fault injection on model directories: kill -9 at every step of a save, loads racing saves, two savers.

The subprocess roles live in tests/model_dir_worker.py. Directories go to /dev/shm when it exists: these
tests check the order of the steps (what a reader or the next save sees after a kill), not durability after
a power cut, and a tmpfs keeps hundreds of fsynced saves within seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import embrec
from tests import model_dir_worker

WORKER = Path(__file__).with_name("model_dir_worker.py")
pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "fork"), reason="POSIX fork and kill -9"
)


@pytest.fixture
def fast_dir(tmp_path):
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="embrec-test-") as d:
            yield Path(d)
    else:
        yield tmp_path


def worker(*args: object, seconds: float = 120) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(embrec.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def result(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_kill_9_at_every_step_of_a_save_leaves_the_old_or_the_new_model_and_no_debris(fast_dir):
    rows = result(worker("kill-points", fast_dir), timeout=300)["results"]
    for start in ("versioned", "legacy", "new"):
        mine = [r for r in rows if r["start"] == start]
        assert len(mine) > 10 and all(r["killed"] for r in mine[:-1]) and not mine[-1]["killed"], (
            start
        )
        # the kill happened before each file-system step in turn: the first kills find the old model,
        # the last ones the new one (marker 1), and nothing else is ever seen
        outcomes = [r["after"] for r in mine]
        switch = outcomes.index(1)
        old = 0 if start != "new" else None
        assert outcomes[:switch] == [old] * switch and outcomes[switch:] == [1] * (
            len(mine) - switch
        ), outcomes
        assert 0 < switch <= len(mine) - 1
        for r in mine:  # the next save works and cleans up whatever the killed one left
            assert r["then"] == 2 and r["debris"] == [], r


def test_loads_racing_two_concurrent_savers_see_whole_models_only(fast_dir):
    d = fast_dir / "m"
    seconds = 3.0
    model_dir_worker.model(0).save(d)  # one model first, so that every load has one to find
    sync = fast_dir / "sync"
    sync.mkdir()
    savers = [worker("saver", d, 1, seconds, sync), worker("saver", d, 2, seconds, sync)]
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready-*"))) < len(savers) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in savers), [
            p.communicate() for p in savers if p.poll() is not None
        ]
        time.sleep(0.05)
    (sync / "go").touch()
    loads = model_dir_worker.loader(d, seconds)  # this process reads while the two save
    saved = [result(p) for p in savers]
    for s in saved:
        assert s["n_errors"] == 0 and s["saves"] >= 10, s
    assert loads["n_errors"] == 0 and loads["mixed"] == 0 and loads["loads"] >= 20, loads
    assert {1, 2} <= set(loads["markers"]), (
        loads
    )  # both savers' models were read while the other was saving
    versions = os.listdir(d / ".versions")
    assert len(versions) == 2 and not any(v.endswith(".tmp") for v in versions), versions
