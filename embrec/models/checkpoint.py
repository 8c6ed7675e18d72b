"""Per-epoch training checkpoints, so that a restarted job (torchrun ``--max-restarts``) resumes.

    with checkpoint.directory("ckpt/"):
        model.fit(train)          # train_loop saves after every epoch; a second run resumes

After each epoch every rank writes ``DIR/<desc>-rank<r>-epoch<e>.pt`` (weights, optimizer state, its
batch RNG, the history and the best-so-far state; written to a temporary name and renamed), then, once
all ranks have written (a barrier), rank 0 records ``e`` in ``DIR/<desc>.epoch`` (also atomically) and
older epochs are removed. A job started with the same directory loads the recorded epoch on every rank
and continues with the next one, so a crash between the ranks' writes never mixes epochs. The directory
holds one training job: point a new job to a new directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embrec.errors import DataError
from embrec.models import distributed

logger = logging.getLogger(__name__)

_DIRECTORY: list[Path] = []


@contextlib.contextmanager
def directory(path: str | Path | None) -> Iterator[None]:
    """Checkpoint every ``train_loop`` inside the block to ``path`` (None: no checkpoints)."""
    if path is None:
        yield
        return
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    _DIRECTORY.append(p)
    try:
        yield
    finally:
        _DIRECTORY.pop()


def _current() -> Path | None:
    return _DIRECTORY[-1] if _DIRECTORY else None


def _file(root: Path, desc: str, rank: int, epoch: int) -> Path:
    return root / f"{desc}-rank{rank}-epoch{epoch}.pt"


def save(
    desc: str,
    epoch: int,
    module: torch.nn.Module,
    opt: Any,
    rng: np.random.Generator,
    history: list[dict[str, float]],
    best_metric: float,
    best_state: dict | None,
    bad_epochs: int,
) -> None:
    root = _current()
    if root is None:
        return
    w = distributed.world()
    state = {
        "epoch": epoch,
        "module": module.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "best_metric": best_metric,
        "best_state": best_state,
        "bad_epochs": bad_epochs,
    }
    target = _file(root, desc, w.rank, epoch)
    tmp = target.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)
    distributed.barrier()
    if w.main:
        marker = root / f"{desc}.epoch"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(epoch))
        os.replace(tmp, marker)
    distributed.barrier()
    for old in root.glob(f"{desc}-rank{w.rank}-epoch*.pt"):
        if old != target:
            old.unlink(missing_ok=True)


def load(
    desc: str, module: torch.nn.Module, opt: Any, rng: np.random.Generator
) -> tuple[int, list[dict[str, float]], float, dict | None, int] | None:
    """(first epoch to run, history, best metric, best state, bad epochs) from the last recorded epoch,
    or None when there is none. ``module``, ``opt`` and ``rng`` are restored in place."""
    root = _current()
    if root is None or not (root / f"{desc}.epoch").exists():
        return None
    epoch = int((root / f"{desc}.epoch").read_text())
    path = _file(root, desc, distributed.world().rank, epoch)
    if not path.exists():
        raise DataError(
            f"checkpoint {path.name} is missing from {str(root)[:80]}; it records epoch {epoch} "
            "but this rank did not write it (a different number of ranks?)."
        )
    state = torch.load(path, weights_only=False)
    module.load_state_dict(state["module"])
    opt.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    if distributed.world().main:
        logger.info("%s: resuming after epoch %d from %s", desc, epoch, root)
    return (
        epoch + 1,
        state["history"],
        state["best_metric"],
        state["best_state"],
        state["bad_epochs"],
    )
