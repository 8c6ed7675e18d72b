"""Data-parallel training over torch.distributed: one code path for every gradient model.

    torchrun --nproc-per-node 2 -m embrec train bpr --data log.parquet --out model/
    embrec train bpr --data log.parquet --out model/ --nproc 2          # the same, agent started for you

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``init()`` joins the process group (gloo on
CPU, nccl on CUDA, a timeout from ``EMBREC_DIST_TIMEOUT`` seconds, default 300, so a rank that dies ends
its peers' collectives with an error instead of a hang). Then:

- every rank reads the same log and builds the vocabularies itself; ``check_same_data`` compares the
  data fingerprint of every rank with rank 0's (an all-gather) and stops with a DataError naming the
  ranks that differ;
- ``local_events`` keeps the rank's shard of the training events, by user (user row % world == rank;
  events of unknown users, row 0, on rank 0), so a user's history stays whole on one rank. Models build
  their examples from it; everything stored in the model (vocabularies, histories, counts) comes from
  the whole log, so every rank holds the same model;
- ``train_loop`` broadcasts rank 0's initial weights, all-reduces the gradients every step (mean over the
  ranks that still have a batch: dense tensors with ``all_reduce``; sparse row gradients are all-gathered
  and concatenated, or densified on nccl), so every rank takes the same optimizer step;
- rank 0 validates (the metric is broadcast, so early stopping is the same everywhere), logs and saves.

``batch_size`` is **per rank**: a step sees world × batch_size examples and averages their gradients,
as one process with that global batch would (exactly, when the ranks' batches are equally large). The
learning rate is not rescaled; raise it yourself if you keep batch_size and add ranks (linear scaling is
the usual rule). Rank 0 draws batches from the model's seed exactly as without torch.distributed, so one
rank is bit-identical to the plain path; rank r > 0 draws from ``(seed stream, r)``.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from embrec.data.interactions import Interactions
from embrec.errors import DataError

logger = logging.getLogger(__name__)

#: seconds a collective waits for the other ranks before failing
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init() -> World:
    """Join the process group that torchrun describes in the environment (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        return world()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        return World()
    timeout = float(os.environ.get("EMBREC_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    w = world()
    logger.info(
        "joined torch.distributed: rank %d of %d (%s, timeout %.0f s)",
        w.rank,
        w.size,
        backend,
        timeout,
    )
    return w


def world() -> World:
    """This process's rank and the number of ranks (0 and 1 outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def is_main() -> bool:
    return world().main


def barrier() -> None:
    if world().distributed:
        dist.barrier()


def _device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def check_same_data(fingerprint: str, what: str = "training data") -> None:
    """Stop on every rank when the ranks' data fingerprints differ (they would encode ids differently)."""
    w = world()
    if not w.distributed:
        return
    digest = hashlib.sha256(fingerprint.encode()).digest()[:16]
    mine = torch.tensor(list(digest), dtype=torch.uint8, device=_device())
    every = [torch.empty_like(mine) for _ in range(w.size)]
    dist.all_gather(every, mine)
    differ = [r for r, t in enumerate(every) if not torch.equal(t, every[0])]
    if differ:
        raise DataError(
            f"the {what} of rank(s) {differ[:8]} differs from rank 0's (data fingerprints differ); "
            "every rank must read the same log so that ids are encoded identically."
        )


def local_events(users: np.ndarray) -> np.ndarray | None:
    """Positions of this rank's events given their user rows (None: all of them, not distributed)."""
    w = world()
    if not w.distributed:
        return None
    users = np.asarray(users, dtype=np.int64)
    mine = (users % w.size) == w.rank
    if w.rank == 0:
        mine |= users == 0  # unknown users (row 0) train on rank 0
    else:
        mine &= users != 0
    return np.flatnonzero(mine)


def local_interactions(train: Interactions) -> Interactions:
    """This rank's shard of ``train`` by user (``train`` itself outside torch.distributed)."""
    rows = local_events(train.user)
    return train if rows is None else train.subset(rows)


def broadcast_float(value: float | None) -> float:
    """Rank 0's value on every rank."""
    if not world().distributed:
        return float(value)  # type: ignore[arg-type]
    t = torch.tensor(
        [0.0 if value is None else float(value)], dtype=torch.float64, device=_device()
    )
    dist.broadcast(t, 0)
    return float(t.item())


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not world().distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def count_active(has_batch: bool, device: torch.device) -> int:
    """How many ranks still have a batch this step (an epoch ends when none has)."""
    t = torch.tensor([1 if has_batch else 0], dtype=torch.int64, device=_comm_device(device))
    dist.all_reduce(t)
    return int(t.item())


def _comm_device(device: torch.device) -> torch.device:
    return _device() if dist.get_backend() == "nccl" else torch.device("cpu")


def average_gradients(params: list[torch.nn.Parameter], active: int) -> None:
    """Replace every gradient by its mean over the ``active`` ranks (a rank without a batch adds zeros)."""
    dense = [p for p in params if p.grad is None or not p.grad.is_sparse]
    for p in dense:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if dense:  # one flat buffer: a single all_reduce for all dense gradients
        flat = torch.cat([p.grad.reshape(-1) for p in dense])
        dist.all_reduce(flat)
        flat.div_(active)
        offset = 0
        for p in dense:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = _all_reduce_sparse(p.grad, p) / active


def ensure_grads(params: list[torch.nn.Parameter], sparse: set[int]) -> None:
    """Zero gradients on a rank without a batch this step (sparse ones empty), so it joins the reduction."""
    for p in params:
        if p.grad is None and id(p) in sparse:
            p.grad = torch.sparse_coo_tensor(
                torch.zeros((1, 0), dtype=torch.int64, device=p.device),
                torch.zeros((0,) + p.shape[1:], dtype=p.dtype, device=p.device),
                p.shape,
                check_invariants=False,
            )


def _all_reduce_sparse(grad: torch.Tensor, p: torch.nn.Parameter) -> torch.Tensor:
    """The sum over ranks of a sparse row gradient: rows and values all-gathered and concatenated
    (uncoalesced; the row-wise optimizer sums repeats). nccl has no sparse collectives: densified there."""
    w = world()
    if dist.get_backend() == "nccl":
        dense = grad.to_dense()
        dist.all_reduce(dense)
        return dense
    grad = grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    n = torch.tensor([rows.numel()], dtype=torch.int64)
    sizes = [torch.empty_like(n) for _ in range(w.size)]
    dist.all_gather(sizes, n)
    most = int(max(s.item() for s in sizes))
    pad_rows = torch.zeros(most, dtype=torch.int64)
    pad_rows[: rows.numel()] = rows
    pad_values = torch.zeros((most,) + values.shape[1:], dtype=values.dtype)
    pad_values[: rows.numel()] = values
    all_rows = [torch.empty_like(pad_rows) for _ in range(w.size)]
    all_values = [torch.empty_like(pad_values) for _ in range(w.size)]
    dist.all_gather(all_rows, pad_rows)
    dist.all_gather(all_values, pad_values)
    rows = torch.cat([r[: int(s.item())] for r, s in zip(all_rows, sizes)])
    values = torch.cat([v[: int(s.item())] for v, s in zip(all_values, sizes)])
    return torch.sparse_coo_tensor(rows[None], values, p.shape, check_invariants=False)


def rank_rng(rng: np.random.Generator) -> np.random.Generator:
    """Rank 0 keeps ``rng`` (bit-identical to the plain path); rank r > 0 gets its own stream."""
    w = world()
    if w.rank == 0:
        return rng
    return np.random.default_rng([int(rng.integers(2**32)), w.rank])
