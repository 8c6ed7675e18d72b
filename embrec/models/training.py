"""One PyTorch training loop for every gradient model.

    history = train_loop(module, batches=make_batches, loss=loss_of_batch, config=TrainConfig(epochs=10),
                         validate=lambda: precision_on_valid(), seed=0)

``batches(rng, epoch)`` yields mini-batches (anything ``loss`` understands, e.g. a Batch dataclass
with ``.to(device)``); ``loss(batch)`` returns a scalar tensor. When it returns a sized iterable (e.g.
``Batches``) the progress bar shows the epoch's total; otherwise the previous epoch's count is used. Each epoch: shuffle through ``rng``,
step the optimizer, clip gradients if asked, evaluate ``validate()`` (higher is better unless
``config.minimize_valid``), keep the best weights, stop after ``patience`` epochs without improvement,
and restore the best weights at the end. The global torch RNG is forked, so training changes nothing
outside the model.

``with epoch_callback(fn): model.fit(...)`` calls ``fn(row, minimize_valid)`` after every epoch of any
``train_loop`` run inside the block (``row`` as in the history); ``embrec tune`` prunes trials there by
raising from ``fn``. The callback lives in a context variable, so it is scoped to the ``with`` block.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from embrec.errors import InvalidParameterError, check_choice, check_float, check_positive_int
from embrec.models import checkpoint, distributed
from embrec.nn.optim import RowAdam

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float], bool], None]
_EPOCH_CALLBACK: contextvars.ContextVar[EpochCallback | None] = contextvars.ContextVar(
    "embrec_epoch_callback", default=None
)


@contextlib.contextmanager
def epoch_callback(fn: EpochCallback) -> Iterator[None]:
    """Call ``fn(row, minimize_valid)`` after each epoch of every ``train_loop`` inside the block."""
    token = _EPOCH_CALLBACK.set(fn)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


class Batches(Iterator[Any]):
    """An epoch's mini-batches and how many there are (a progress bar's total), without materialising
    them; a one-pass iterator like the generator it wraps.

        Batches(gen, n)                       # n = the number of batches gen yields
        Batches(gen, n).map(lambda b: b.to(device))
    """

    def __init__(self, batches: Iterable[Any], n: int) -> None:
        self._it = iter(batches)
        self._n = int(n)

    def __next__(self) -> Any:
        return next(self._it)

    def __len__(self) -> int:
        return self._n

    def map(self, fn: Callable[[Any], Any]) -> Batches:
        """The same batches passed through ``fn`` (lazily), with the same count."""
        return Batches((fn(b) for b in self._it), self._n)


def n_batches(n: int, batch_size: int) -> int:
    """How many batches of ``batch_size`` cover ``n`` rows (the last one may be short)."""
    return -(-int(n) // int(batch_size))


def step_floor_batch(batch_size: int, n: int, epochs: int, min_steps: int, ranks: int = 1) -> int:
    """The batch size a fit uses: ``batch_size``, unless ``epochs`` passes over ``n`` examples (split
    across ``ranks``) would then take fewer than ``min_steps`` optimizer steps, as on a log too small
    for a large batch; then the largest batch that takes ``min_steps`` (0: no floor). Every rank
    computes the same value from the same global ``n``."""
    per_rank = -(-int(n) // int(ranks))
    if min_steps <= 0 or per_rank == 0 or epochs * n_batches(per_rank, batch_size) >= min_steps:
        return int(batch_size)
    return max(1, per_rank * int(epochs) // int(min_steps))


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 1e-2
    optimizer: str = "adam"  # "adam", "adamw", "sgd", "adagrad"
    weight_decay: float = 0.0
    clip_grad: float | None = None
    patience: int | None = None  # early stopping on the validation metric
    minimize_valid: bool = False  # True when the validation metric is an error (RMSE)
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_choice("optimizer", self.optimizer, ("adam", "adamw", "sgd", "adagrad"))
        check_float("weight_decay", self.weight_decay, low=0.0)
        if self.clip_grad is not None:
            check_float("clip_grad", self.clip_grad, low=0.0, low_open=True)
        if self.patience is not None:
            check_positive_int("patience", self.patience)


def resolve_device(device: str | None) -> torch.device:
    """'auto' or None -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(
            f"device must be 'auto', 'cpu' or 'cuda[:N]'; received {device!r}."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device={device!r} was asked for but no CUDA device is available."
        )
    return dev


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[np.random.Generator]:
    """Fork torch's global RNG, seed it, and yield a NumPy generator with the same seed."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield np.random.default_rng(seed)


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    config: TrainConfig,
    sparse: Iterable[torch.nn.Parameter] = (),
) -> torch.optim.Optimizer | OptimizerGroup:
    """The optimizer ``config`` names over ``params``. Parameters listed in ``sparse`` receive sparse
    row gradients (e.g. from ``embrec.nn.pairwise.gather_rows``) and get ``embrec.nn.optim.RowAdam``
    (lazy Adam: only the rows in the batch move; their moments decay only when touched), so a step
    costs O(rows in the batch), not O(table) — only with ``optimizer="adam"`` and no weight decay."""
    sparse_ids = {id(p) for p in sparse}
    params = [p for p in params if p.requires_grad]
    rows = [p for p in params if id(p) in sparse_ids]
    if rows:
        if config.optimizer != "adam" or config.weight_decay:
            raise InvalidParameterError(
                "sparse row updates need optimizer='adam' and weight_decay=0; received "
                f"optimizer={config.optimizer!r}, weight_decay={config.weight_decay}."
            )
        dense = [p for p in params if id(p) not in sparse_ids]
        parts: list[torch.optim.Optimizer] = [RowAdam(rows, lr=config.lr)]
        if dense:
            parts.append(make_optimizer(dense, config))
        return OptimizerGroup(parts)
    # the fused kernel does a whole step in one pass (about 3x faster than the per-tensor loop on CPU)
    fused = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    if config.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None
        )
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)


class OptimizerGroup:
    """Several optimizers stepped as one (e.g. SparseAdam for embedding tables, Adam for the rest)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, part in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(part)


def train_loop(
    module: torch.nn.Module,
    *,
    batches: Callable[[np.random.Generator, int], Iterable[Any]],
    loss: Callable[[Any], torch.Tensor],
    config: TrainConfig,
    rng: np.random.Generator,
    validate: Callable[[], float] | None = None,
    optimizer: torch.optim.Optimizer | OptimizerGroup | None = None,
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train ``module`` in place; returns per-epoch history [{"epoch", "loss", "valid"?, "seconds"}].

    Under torch.distributed (see ``embrec.models.distributed``) every rank runs this loop on its own
    batches: rank 0's weights are broadcast first, gradients are averaged over the ranks every step, and
    rank 0 validates. With ``checkpoint.directory()`` set, the state is saved after every epoch and a
    restarted job resumes after the last saved epoch."""
    opt = optimizer or make_optimizer(module.parameters(), config)
    show = config.progress if config.progress is not None else sys.stderr.isatty()
    w = distributed.world()
    params = [p for p in module.parameters() if p.requires_grad]
    sparse = _sparse_params(opt)
    if w.distributed:
        distributed.broadcast_module(module)
        rng = distributed.rank_rng(rng)
        torch.manual_seed(torch.initial_seed() + w.rank)
        show = show and w.main
    history: list[dict[str, float]] = []
    best_metric, best_state, bad_epochs = -math.inf, None, 0
    last_count: int | None = (
        None  # batches of the previous epoch: the bar's total when the epoch's is unknown
    )
    first = 1
    resumed = checkpoint.load(desc, module, opt, rng)
    if resumed is not None:
        first, history, best_metric, best_state, bad_epochs = resumed
    for epoch in range(first, config.epochs + 1):
        module.train()
        t0, total, count = time.perf_counter(), 0.0, 0
        epoch_batches = batches(rng, epoch)
        size = len(epoch_batches) if hasattr(epoch_batches, "__len__") else last_count
        bar = tqdm(
            epoch_batches,
            total=size,
            desc=f"{desc} epoch {epoch}/{config.epochs}",
            disable=not show,
            leave=False,
            unit="batch",
        )
        steps = iter(bar)
        while True:
            batch = next(steps, _DONE)
            if not w.distributed:
                if batch is _DONE:
                    break
                active = 1
            else:  # every rank steps until none has a batch left; one that has run out adds zeros
                active = distributed.count_active(batch is not _DONE, params[0].device)
                if active == 0:
                    break
            opt.zero_grad(set_to_none=True)
            if batch is not _DONE:
                value = loss(batch)
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"{desc}: the loss became {value.item()} in epoch {epoch}; "
                        "lower the learning rate (lr) or add regularization."
                    )
                value.backward()
                total += float(value.detach())
                count += 1
            if w.distributed:
                distributed.ensure_grads(params, sparse)
                distributed.average_gradients(params, active)
            if config.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), config.clip_grad)
            opt.step()
            if count % 50 == 0 and count:
                bar.set_postfix(loss=f"{total / count:.4f}")
        last_count = count
        row = {"epoch": epoch, "loss": total / max(count, 1), "seconds": time.perf_counter() - t0}
        if validate is not None:
            metric = None
            if w.main:  # rank 0 validates; every rank takes the same early-stopping decisions
                module.eval()
                with torch.no_grad():
                    metric = float(validate())
            metric = distributed.broadcast_float(metric)
            row["valid"] = metric
            score = -metric if config.minimize_valid else metric
            if score > best_metric:
                best_metric, bad_epochs = score, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad_epochs += 1
        history.append(row)
        if w.main:
            logger.info("%s epoch %d: %s", desc, epoch, {k: round(v, 5) for k, v in row.items()})
        checkpoint.save(desc, epoch, module, opt, rng, history, best_metric, best_state, bad_epochs)
        callback = _EPOCH_CALLBACK.get()
        if callback is not None:
            callback(row, config.minimize_valid)
        if config.patience is not None and bad_epochs >= config.patience:
            if w.main:
                logger.info(
                    "%s: early stop after epoch %d (no improvement in %d epochs)",
                    desc,
                    epoch,
                    bad_epochs,
                )
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


_DONE = object()


def _sparse_params(opt: Any) -> set[int]:
    """ids of the parameters whose gradients are sparse rows (those of a RowAdam)."""
    parts = getattr(opt, "optimizers", [opt])
    return {
        id(p)
        for part in parts
        if isinstance(part, RowAdam)
        for g in part.param_groups
        for p in g["params"]
    }


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None) -> Batches:
    """Positions 0..n-1 in shuffled (or, without rng, sequential) chunks of ``batch_size``."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return Batches(
        (order[s : s + batch_size] for s in range(0, n, batch_size)), n_batches(n, batch_size)
    )
