"""Subprocess roles for tests/test_model_dir_faults.py (run as a script; prints one JSON line).

    python model_dir_worker.py kill-points DIR      kill -9 a forked saver before each file-system step
    python model_dir_worker.py saver DIR MARKER SECONDS [SYNC]
    python model_dir_worker.py loader DIR SECONDS [SYNC]    (SYNC: a folder to start the loops together)

Every saved model is identifiable: the popularity model of MARKER's own log, with the marker, the log's
fingerprint, the sum of the stored counts and the number of users in metrics.json. A load is "mixed" when
its config.json (fingerprint), weights (counts) or users.json disagree with its metrics.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import embrec
from embrec.baselines import Popularity
from embrec.data import Interactions
from embrec.models import store

#: audit events of the steps of a save that change the file system (os.replace raises "os.rename", os.unlink
#: "os.remove"; "open" counts when it opens for writing). Killing before a read leaves the same state as
#: killing before the next change, so reads are not kill points of their own.
STEPS = {
    "os.mkdir",
    "os.rename",
    "os.symlink",
    "os.remove",
    "os.rmdir",
    "shutil.rmtree",
    "os.chmod",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def changes_files(event: str, args: tuple) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        return (
            any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
        )
    return event in STEPS


def model(marker: int) -> Popularity:
    n = 3 + marker
    frame = pd.DataFrame(
        {
            "user": [u for u in range(n) for _ in range(2)],
            "item": [f"i{(u * 7 + j) % (n + 2)}" for u in range(n) for j in range(2)],
        }
    )
    m = Popularity().fit(Interactions.from_frame(frame, user_col="user", item_col="item"))
    m.metrics_ = {
        "marker": marker,
        "fingerprint": m.fingerprint_,
        "sum": float(m.item_counts_.sum()),
        "users": int(m.users_.n_ids),
    }
    return m


def identify(path: Path) -> int:
    """The marker of the model in ``path``; -1 when its files come from different saves."""
    m = embrec.load(path)
    meta = m.metrics_
    whole = (
        m.fingerprint_ == meta["fingerprint"]
        and float(m.item_counts_.sum()) == meta["sum"]
        and float(np.asarray(m.counts_).sum()) == meta["sum"]
        and m.users_.n_ids == meta["users"]
    )
    return int(meta["marker"]) if whole else -1


def debris(path: Path) -> list[str]:
    """What a model directory holds beyond current, .lock and at most two versions (current + previous)."""
    extra = sorted(set(os.listdir(path)) - {store.POINTER, store.LOCK, store.VERSIONS})
    versions = sorted(os.listdir(path / store.VERSIONS))
    if len(versions) > 2 or store.pointer_target(path) not in versions:
        extra += [f"{store.VERSIONS}/{v}" for v in versions]
    return extra + [f"{store.VERSIONS}/{v}" for v in versions if v.endswith(".tmp")]


def save_killed_at(m: Popularity, path: Path, step: int) -> bool:
    """Save ``m`` in a forked child that SIGKILLs itself before its ``step``-th file-system event;
    returns True when the child was killed (False: the save finished first)."""
    pid = os.fork()
    if pid == 0:  # the child
        seen = [0]

        def hook(event: str, args: tuple) -> None:
            if changes_files(event, args):
                if seen[0] == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                seen[0] += 1

        sys.addaudithook(hook)
        m.save(path)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return False
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    return True


def kill_points(root: Path) -> dict:
    """For each layout (versioned, first layout, none yet) and each step: kill, load, save again, check."""
    models = {k: model(k) for k in range(3)}
    results = []
    for start in ("versioned", "legacy", "new"):
        step = 0
        while True:
            path = root / f"{start}-{step}"
            before = None
            if start != "new":
                models[0].save(path)
                models[0].save(path)  # two versions: the save under test also deletes one
                before = 0
                if start == "legacy":
                    legacy = root / "legacy-src"
                    shutil.rmtree(legacy, ignore_errors=True)
                    shutil.copytree(store.resolve(path), legacy)
                    shutil.rmtree(path)
                    os.unlink(legacy / store.MANIFEST)
                    config = json.loads((legacy / "config.json").read_text())
                    (legacy / "config.json").write_text(json.dumps({**config, "format_version": 1}))
                    legacy.rename(path)
            killed = save_killed_at(models[1], path, step)
            try:
                after = identify(path)
            except embrec.errors.ModelFileError as exc:  # fine only when there was no model before
                after = None if before is None else f"error: {exc}"
            models[2].save(path)
            results.append(
                {
                    "start": start,
                    "step": step,
                    "killed": killed,
                    "before": before,
                    "after": after,
                    "then": identify(path),
                    "debris": debris(path),
                }
            )
            shutil.rmtree(path)
            if not killed:
                break
            step += 1
    return {"results": results}


def start_together(sync: Path | None) -> None:
    """Say ``ready`` (a file in ``sync``) and wait for the test's ``go``, so that the timed loops overlap
    whatever each process spent on imports."""
    if sync is None:
        return
    (sync / f"ready-{os.getpid()}").touch()
    limit = time.monotonic() + 120
    while not (sync / "go").exists() and time.monotonic() < limit:
        time.sleep(0.01)


def saver(path: Path, marker: int, seconds: float, sync: Path | None = None) -> dict:
    m = model(marker)
    if sync is not None:
        m.save(sync / "warm-up" / str(os.getpid()))  # imports everything a save needs
    start_together(sync)
    saves, errors = 0, []
    end = time.monotonic() + seconds
    while saves == 0 or time.monotonic() < end:
        try:
            m.save(path)
            saves += 1
        except Exception as exc:  # noqa: BLE001 - counted, reported by the test
            errors.append(repr(exc)[:200])
            if len(errors) > 1000:
                break
    return {"saves": saves, "errors": errors[:5], "n_errors": len(errors)}


def loader(path: Path, seconds: float, sync: Path | None = None) -> dict:
    identify(
        path
    )  # imports everything a load needs (the directory holds a model before loaders start)
    start_together(sync)
    loads, mixed, errors, markers = 0, 0, [], set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            marker = identify(path)
            loads += 1
            mixed += marker == -1
            markers.add(marker)
        except Exception as exc:  # noqa: BLE001 - counted, reported by the test
            errors.append(repr(exc)[:200])
    return {
        "loads": loads,
        "mixed": mixed,
        "markers": sorted(markers),
        "errors": errors[:5],
        "n_errors": len(errors),
    }


if __name__ == "__main__":
    role, where = sys.argv[1], Path(sys.argv[2])
    if role == "kill-points":
        out = kill_points(where)
    elif role == "saver":
        out = saver(
            where,
            int(sys.argv[3]),
            float(sys.argv[4]),
            Path(sys.argv[5]) if len(sys.argv) > 5 else None,
        )
    else:
        out = loader(where, float(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
    print(json.dumps(out))
