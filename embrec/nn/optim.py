"""Row-wise Adam for embedding tables with sparse row gradients: a step touches the batch's rows only.

    opt = RowAdam([module.user_factors, module.item_factors], lr=5e-3)
    loss = bpr_factor_loss(...)   # gradients are sparse COO tensors over the drawn rows
    loss.backward(); opt.step()

This is lazy Adam, as ``torch.optim.SparseAdam`` (which does the same several times slower on CPU,
through sparse-tensor arithmetic): a row's moments decay only in steps that draw it, and the bias
correction uses the table's step count; on the rows a step draws, the update equals dense Adam's. A
dense gradient (e.g. a scalar bias) gets the ordinary Adam update.

A table's two moments are kept side by side, ``state["moments"]`` (rows, 2, ...): a row's mean and
second moment are one run of memory, so a step's random row accesses touch two places (parameter,
moments), not three. On CPU a table's step is one compiled pass (``embrec.nn.kernels.adam_rows``; two
tables drawn at the same rows, such as item factors and biases, share it): the repeats of a row are
summed through a table-sized row-to-position map (no sort), then Adam updates each distinct row of the
parameter and its moments in place, prefetching the rows a few ahead (random rows of large tables are
cache misses). Elsewhere (CUDA): the drawn rows are sorted and their gradients summed (one
``embedding_bag`` sum over the sorted order), the parameter's and moments' rows gathered into buffers
kept between steps, updated in one fused pass (``torch._fused_adam_`` where this torch has it, else
in-place ops) and written back. Both are O(B d) work, with no temporaries of table size;
``tests/test_kernels.py`` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from embrec.nn import compiled

_FUSED = hasattr(torch, "_fused_adam_")


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam over sparse row gradients (dense gradients: plain Adam)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim signature
        loss = None if closure is None else closure()
        compiled: dict[tuple[int, int, int], list[_Rows]] = {}  # CPU tables, grouped by shared rows
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    # Adam's two moments of a row side by side: (rows, 2, ...), [:, 0] the mean
                    state["moments"] = p.new_zeros((p.shape[0], 2) + p.shape[1:])
                moments = state["moments"]
                grad = p.grad
                if not grad.is_sparse:
                    state["step"] += 1
                    _adam(p, grad, moments[:, 0], moments[:, 1], state["step"], group)
                    continue
                rows = grad._indices()[0]
                if rows.numel() == 0:
                    continue
                if _on_cpu(p):  # the same rows tensor (e.g. item factors and biases): one pass
                    key = (rows.data_ptr(), rows.numel(), p.shape[0])
                    compiled.setdefault(key, []).append(
                        _Rows(p, rows, grad._values(), state, group)
                    )
                    continue
                state["step"] += 1
                uniq, g = sum_rows(rows, grad._values())
                n = uniq.numel()
                bufs = _buffers(state, p, n, rows.numel())
                p_rows, m_rows, v_rows = (b[:n] for b in bufs)
                tables = (p, moments[:, 0], moments[:, 1])
                for table, out in zip(tables, (p_rows, m_rows, v_rows)):
                    torch.index_select(table, 0, uniq, out=out)
                _adam(p_rows, g, m_rows, v_rows, state["step"], group)
                for table, out in zip(tables, (p_rows, m_rows, v_rows)):
                    _write_rows(table, uniq, out)
        for tables in compiled.values():
            for i in range(0, len(tables), 2):
                self._compiled_step(tables[i : i + 2])
        return loss

    def _compiled_step(self, tables: list[_Rows]) -> None:
        """The step of one or two CPU tables drawn at the same rows by one compiled pass
        (``embrec.nn.kernels.adam_rows``): repeats summed through a row-to-position map, then Adam in
        place on each distinct row of the parameters and moments."""
        kernels = compiled.kernels()
        n, size = tables[0].rows.numel(), tables[0].param.shape[0]
        parts = [t.arrays(n) for t in tables]
        if len(parts) == 1:  # a second table of width 0: no work
            dtype = parts[0][0].dtype
            parts.append(tuple(np.empty((r, 0), dtype=dtype) for r in (size, size, n)))
        key = tuple(id(t.param) for t in tables)
        scratch = self.__dict__.setdefault("_scratch", {})
        slot, acc, uniq = scratch.get(key, (None, (), None))
        widths = tuple((p[0].shape[1], p[0].dtype) for p in parts)
        if slot is None or slot.shape[0] != size:
            slot = kernels.new_slot(size)
        if uniq is None or uniq.shape[0] < n or tuple((a.shape[1], a.dtype) for a in acc) != widths:
            acc = tuple(np.empty((n, w), dtype=dt) for w, dt in widths)
            uniq = np.empty(n, dtype=np.int64)
        scratch[key] = (slot, acc, uniq)
        consts = tuple(t.consts() for t in tables)
        if len(consts) == 1:
            consts = (consts[0], consts[0])
        kernels.adam_rows(
            (parts[0][0], parts[1][0]),
            (parts[0][1], parts[1][1]),
            (parts[0][2], parts[1][2]),
            consts,
            tables[0].rows.contiguous().numpy(),
            slot,
            acc,
            uniq,
        )
        for t in tables:
            t.state["step"] += 1


@dataclass
class _Rows:
    """A CPU table's sparse gradient waiting for the compiled step."""

    param: torch.Tensor
    rows: torch.Tensor  # (n,)
    values: torch.Tensor  # (n, ...)
    state: dict
    group: dict

    def arrays(self, n: int) -> tuple[np.ndarray, ...]:
        """NumPy views of the parameter (R, d), its moments (R, 2 d: a row's mean then its second
        moment) and the gradient rows (n, d) (1-D tables as one column)."""
        p = self.param.detach()
        shape = (p.shape[0], -1)
        return (
            p.view(shape).numpy(),
            self.state["moments"].view(shape).numpy(),
            self.values.contiguous().view(n, -1).numpy(),
        )

    def consts(self) -> np.ndarray:
        """Adam's factors for this table's next step (``embrec.nn.kernels.adam_consts``)."""
        kernels = compiled.kernels()
        b1, b2 = self.group["betas"]
        step = float(self.state["step"]) + 1
        dtype = torch.empty(0, dtype=self.param.dtype).numpy().dtype
        return kernels.adam_consts(self.group["lr"], b1, b2, self.group["eps"], step, dtype)


def _on_cpu(p: torch.Tensor) -> bool:
    """Whether the compiled CPU kernels can update ``p`` in place (a contiguous float CPU tensor, and
    Numba installed)."""
    return (
        p.device.type == "cpu"
        and p.is_contiguous()
        and p.dtype in (torch.float32, torch.float64)
        and compiled.kernels() is not None
    )


def sum_rows(rows: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct ``rows`` (ascending) and the sum of ``values`` (n, ...) over each: one sort of the
    n row ids, then an ``embedding_bag`` sum over the sorted order (a gather; a scatter-add
    (``index_add_``) of 2-D rows is several times slower on CPU)."""
    ordered, perm = torch.sort(rows)
    uniq, counts = torch.unique_consecutive(ordered, return_counts=True)
    flat = values.reshape(values.shape[0], -1)  # (n, d): 1-D tables as one column
    if uniq.numel() == rows.numel():
        g = flat.index_select(0, perm)
    else:
        offsets = torch.zeros(uniq.numel() + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        g = F.embedding_bag(perm, flat, offsets, mode="sum", include_last_offset=True)
    return uniq, g.view((uniq.numel(),) + values.shape[1:])


def _buffers(state: dict, p: torch.Tensor, n: int, capacity: int) -> list[torch.Tensor]:
    """Three (>= n, ...) row buffers kept in ``state`` (grown when a step draws more rows)."""
    bufs = state.get("rows")
    if bufs is None or bufs[0].shape[0] < n:
        size = max(n, capacity)
        bufs = state["rows"] = [
            torch.empty((size,) + p.shape[1:], dtype=p.dtype, device=p.device) for _ in range(3)
        ]
    return bufs


def _adam(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    step: torch.Tensor,
    group: dict,
) -> None:
    """One Adam step in place: m, v the moments, ``step`` the (already incremented) step count."""
    b1, b2 = group["betas"]
    fused = _FUSED and all(t.is_contiguous() for t in (p, m, v))  # the fused kernel needs them so
    if fused and p.device.type in ("cpu", "cuda"):
        torch._fused_adam_(
            [p],
            [g.contiguous()],
            [m],
            [v],
            [],
            [step.to(p.device)],
            lr=group["lr"],
            beta1=b1,
            beta2=b2,
            weight_decay=0.0,
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )
        return
    t = float(step)
    step_size = group["lr"] / (1 - b1**t)
    root_c2 = (1 - b2**t) ** 0.5
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    p.addcdiv_(m, v.sqrt().div_(root_c2).add_(group["eps"]), value=-step_size)


def _write_rows(table: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """``table[rows] = values`` for distinct rows (NumPy's row assignment on CPU)."""
    if table.device.type == "cpu" and table.is_contiguous() and values.is_contiguous():
        table.detach().numpy()[rows.numpy()] = values.numpy()
    else:
        table.index_copy_(0, rows, values)
