"""Stress a model directory: two processes saving into it and N processes loading it, for a fixed time.

    .venv/bin/python benchmarks/stress_model_dir.py                      # /tmp, 20 s, 2 loaders
    .venv/bin/python benchmarks/stress_model_dir.py --root /dev/shm --seconds 60 --loaders 4

Each saver saves its own identifiable popularity model in a loop; each loader loads in a loop and counts a
load as "mixed" when its config.json, weights.safetensors and users.json disagree with its metrics.json
(see tests/model_dir_worker.py). Prints one JSON line per process and a summary; exits 1 on any mixed load
or failed load or save. The test suite runs the same for 3 s (tests/test_model_dir_faults.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import model_dir_worker  # noqa: E402
from tests.test_model_dir_faults import result, worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=tempfile.gettempdir(), help="where the model directory is made"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--loaders", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.root, prefix="embrec-stress-") as tmp:
        d, sync = Path(tmp) / "m", Path(tmp) / "sync"
        sync.mkdir()
        model_dir_worker.model(0).save(d)
        procs = [
            worker("saver", d, 1, args.seconds, sync),
            worker("saver", d, 2, args.seconds, sync),
        ]
        procs += [worker("loader", d, args.seconds, sync) for _ in range(args.loaders)]
        while len(list(sync.glob("ready-*"))) < len(procs):
            time.sleep(0.05)
        (sync / "go").touch()
        rows = [result(p, timeout=args.seconds + 600) for p in procs]
    for row in rows:
        print(json.dumps(row))
    saves = sum(r.get("saves", 0) for r in rows)
    loads = sum(r.get("loads", 0) for r in rows)
    mixed = sum(r.get("mixed", 0) for r in rows)
    errors = sum(r["n_errors"] for r in rows)
    print(
        f"{args.seconds:g} s in {args.root}: {saves} saves by 2 savers, {loads} loads by {args.loaders} "
        f"loaders: {mixed} mixed, {errors} errors"
    )
    return 1 if mixed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
