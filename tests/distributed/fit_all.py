"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2``: every gradient model is fitted on
both ranks (data-parallel through the shared training loop) and rank 0 saves it to OUT/<model>; then the
deterministic explicit-mf of ``balanced_ratings()`` is fitted with half the global batch per rank."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch

from embrec.data import Interactions
from embrec.datasets import synthetic
from embrec.models import distributed
from embrec.models.registry import create

MODELS: dict[str, dict] = {
    "bpr": {"factors": 8, "epochs": 2, "batch_size": 256},
    "implicit-mf": {"factors": 8, "epochs": 2, "batch_size": 256},
    "explicit-mf": {"factors": 8, "epochs": 2, "batch_size": 128, "patience": None},
    "rating-dnn": {"factors": 8, "epochs": 2, "batch_size": 128, "patience": None},
    "softmax-dnn": {
        "dim": 8,
        "hidden": (16,),
        "epochs": 2,
        "batch_size": 64,
        "patience": None,
        "min_epoch_examples": 0,
    },
    # the sampled softmax: sparse row gradients of the item table, all-gathered across the ranks
    "softmax-dnn:sampled": {
        "dim": 8,
        "hidden": (16,),
        "epochs": 2,
        "batch_size": 64,
        "patience": None,
        "loss": "sampled",
        "num_negatives": 8,
        "min_epoch_examples": 0,
    },
    "two-tower": {
        "dim": 8,
        "item_hidden": (16,),
        "user_hidden": (16,),
        "epochs": 2,
        "batch_size": 64,
        "patience": None,
        "min_epoch_examples": 0,
    },
    "rnn": {"embedding_dim": 8, "hidden_dim": 8, "user_dim": 4, "epochs": 2, "batch_size": 64},
    "sasrec": {"dim": 8, "num_layers": 1, "epochs": 2, "batch_size": 64},
}
EQUAL = {
    "factors": 4,
    "epochs": 6,
    "lr": 0.05,
    "optimizer": "adam",
    "valid_fraction": 0.0,
    "patience": None,
    "seed": 3,
    "progress": False,
}


def tiny_log() -> Interactions:
    return synthetic(n_users=60, n_items=30, n_interactions=1500, seed=0)


def balanced_ratings(n_users: int = 20, per_user: int = 8) -> Interactions:
    """Every user rates ``per_user`` items, so each of two ranks (users by row parity) holds half the ratings."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u:02d}", f"i{i:02d}", float(rng.integers(1, 6)))
        for u in range(n_users)
        for i in rng.choice(15, per_user, replace=False)
    ]
    return Interactions.from_frame(
        pd.DataFrame(rows, columns=["user", "item", "rating"]),
        user_col="user",
        item_col="item",
        rating_col="rating",
    )


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    world = distributed.init()
    log = tiny_log()
    for name, params in MODELS.items():
        model = create(name.split(":")[0], progress=False, seed=0, **params).fit(log)
        if world.main:
            model.save(f"{out}/{name.replace(':', '-')}")
        distributed.barrier()
    from embrec.batch_scoring import recommend_all
    from embrec.models.io import load_model

    # each rank scores its blocks of users into its own part file
    recommend_all(load_model(f"{out}/bpr"), f"{out}/recs", k=3, block=7)
    data = balanced_ratings()
    model = create("explicit-mf", batch_size=len(data) // world.size, **EQUAL).fit(data)
    if world.main:
        model.save(f"{out}/explicit-equal")
    distributed.barrier()


if __name__ == "__main__":
    main()
