"""Shared fixtures: small logs with known answers, and the shared datasets when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embrec import Interactions

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def data_dir() -> Path | None:
    """The folder holding ml-100k/ and online-retail/, from $EMBREC_DATA or ../shared/datasets."""
    for cand in (os.environ.get("EMBREC_DATA"), SHARED):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("shared datasets absent (set EMBREC_DATA)")
    return d


def make_log(pairs: list[tuple[object, object]], **extra) -> Interactions:
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    for k, v in extra.items():
        frame[k] = v
    return Interactions.from_frame(frame, user_col="user", item_col="item",
                                   time_col="time" if "time" in extra else None,
                                   rating_col="rating" if "rating" in extra else None,
                                   group_col="group" if "group" in extra else None)


@pytest.fixture
def checkerboard() -> tuple[Interactions, dict[int, int]]:
    """Two user blocks x two item blocks: users 0-9 buy items 0-9, users 10-19 buy items 10-19.
    One cell per user is held out; a model that learned the blocks ranks the held-out item first among
    unseen items (the only unseen item of the user's own block). Returns (train, held-out item per user)."""
    rng = np.random.default_rng(0)
    pairs, held = [], {}
    for u in range(20):
        block = range(0, 10) if u < 10 else range(10, 20)
        out = int(rng.choice(list(block)))
        held[u] = out
        pairs += [(u, i) for i in block if i != out]
    # every item needs at least one event: the held-out ones are bought by another user of the block
    return make_log(pairs), held


def rewrite_model_file(model_dir, name: str, data: bytes) -> None:
    """Replace one file of a model directory's current version and re-sign its manifest: a consistent edit
    (what a buggy or hostile writer could produce), so that the check under test is not the checksum."""
    import hashlib
    import json

    from embrec.models import store
    from embrec.models.io import model_files

    folder = model_files(model_dir)
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest["digest"] = store.files_digest(manifest["files"])
    (folder / store.MANIFEST).write_text(json.dumps(manifest))
