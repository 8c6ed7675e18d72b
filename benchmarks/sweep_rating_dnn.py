"""Screen RatingDNN settings on ml-100k fold u1: one fit on u1.base per setting, scored by the model's own
validation RMSE (its seeded 5 % of u1.base; u1.test is never read) and the genre overlap of its item
embeddings (top-10 cosine neighbours, all movies and movies with >= 20 ratings in u1.base).

    EMBREC_DATA=../shared/datasets .venv/bin/python benchmarks/sweep_rating_dnn.py \
        '{"output_gravity": 0.1}' '{"output_gravity": 0.1, "gravity_part": "interaction"}' ... >> sweep.jsonl

Each argument is a JSON dict of RatingDNN keyword arguments; one JSON line per setting is printed.
With ``--full`` first, each setting is fitted on all 100,000 ratings instead (the neighbour protocol of
bench_explicit.py; its valid_rmse is then the model's own 5 % of all ratings, not a u1 figure).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from embrec.datasets import load
from embrec.datasets.registry import ml100k_fold
from embrec.evaluation.neighbours import model_genre_overlap
from embrec.models.rating_dnn import RatingDNN


def main() -> None:
    torch.set_num_threads(1)
    args = sys.argv[1:]
    full = bool(args) and args[0] == "--full"
    if full:
        args = args[1:]
    base = load("ml-100k") if full else ml100k_fold("u1")[0]
    for arg in args:
        kw = json.loads(arg)
        start = time.perf_counter()
        try:
            model = RatingDNN(**kw).fit(base)
        except FloatingPointError as exc:  # diverged: record it and go on
            print(json.dumps({"kw": kw, "error": str(exc)}), flush=True)
            continue
        seconds = time.perf_counter() - start
        out = {"kw": kw, "data": "ml-100k" if full else "u1.base", "valid_rmse": round(model.metrics_["valid_rmse"], 4), "epochs": len(model.history_),
               "fit_s": round(seconds, 1)}
        for mc in (1, 20):
            out[f"ratio_{mc}"] = round(model_genre_overlap(model, base, column="genres", min_count=mc)["ratio"], 3)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
