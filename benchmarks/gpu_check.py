"""CUDA check: every gradient model trains on the GPU through the same code path as on the CPU.

For each model: fit on a seeded synthetic shop with device="cpu" and device="cuda", score both on the
random-holdout protocol, save the CUDA-trained model and load it back (on a machine without CUDA it must
load and score the same), and print one markdown table. Run on a machine with a GPU:

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch

import embrec
from embrec.datasets import synthetic
from embrec.evaluation import run_protocol
from embrec.models.registry import create

MODELS: dict[str, dict] = {
    "explicit-mf": {"epochs": 5},
    "rating-dnn": {"epochs": 5},
    "implicit-mf": {"epochs": 5},
    "bpr": {"epochs": 5},
    "softmax-dnn": {"epochs": 5},
    "two-tower": {"epochs": 5},
    "rnn": {"epochs": 5},
    "sasrec": {"epochs": 5},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    data = synthetic(n_users=2000, n_items=800, n_interactions=60000, seed=0)
    rating_data = data  # quantities as ratings for the explicit models
    rows = []
    for name in args.models.split(","):
        params = MODELS[name]
        log = rating_data if name in ("explicit-mf", "rating-dnn") else data
        protocol = "random-holdout"
        row = {"model": name}
        for device in args.devices.split(","):
            t0 = time.perf_counter()
            try:
                res = run_protocol(protocol, {name: lambda d=device, n=name, p=params: create(n, **p, device=d)},
                                   data=log)
                metrics = res["results"][0]["metrics"]
                row[f"{device}_ndcg@10"] = round(metrics.get("ndcg@10", float("nan")), 4)
                row[f"{device}_fit_s"] = round(res["results"][0]["fit_seconds"], 2)
            except Exception as exc:  # report, keep going
                row[f"{device}_error"] = f"{type(exc).__name__}: {exc}"[:200]
            row[f"{device}_total_s"] = round(time.perf_counter() - t0, 2)
        try:
            model = create(name, **params, device="cuda").fit(log)
            with tempfile.TemporaryDirectory() as tmp:
                model.save(f"{tmp}/m")
                again = embrec.load(f"{tmp}/m")
                users = model.users_.raw_ids[:50].tolist()
                a = model.recommend(users=users, k=10)
                b = again.recommend(users=users, k=10)
                row["save_load_same_top10"] = bool((a.rows == b.rows).all())
                row["save_load_max_score_diff"] = float(np.nanmax(np.abs(a.scores - b.scores)))
        except Exception as exc:
            row["save_load_error"] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "model", k))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
