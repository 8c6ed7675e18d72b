"""Row-wise Adam for embedding tables with sparse row gradients: a step touches the batch's rows only.

    opt = RowAdam([module.user_factors, module.item_factors], lr=5e-3)
    loss = bpr_factor_loss(...)   # gradients are sparse COO tensors over the drawn rows
    loss.backward(); opt.step()

This is lazy Adam, as ``torch.optim.SparseAdam`` (which does the same several times slower on CPU,
through sparse-tensor arithmetic): a row's moments decay only in steps that draw it, and the bias
correction uses the table's step count; on the rows a step draws, the update equals dense Adam's. A
dense gradient (e.g. a scalar bias) gets the ordinary Adam update.

On CPU a table's step is one compiled pass (``embrec.nn.kernels.adam_rows``): the repeats of a row are
summed through a table-sized row-to-position map (no sort), then Adam updates each distinct row of the
parameter and of its two moments in place, prefetching the rows a few ahead (random rows of large tables
are cache misses). Elsewhere (CUDA): the drawn rows are sorted and their gradients summed (one
``embedding_bag`` sum over the sorted order), the parameter's and moments' rows gathered into buffers
kept between steps, updated in one fused pass (``torch._fused_adam_`` where this torch has it, else
in-place ops) and written back. Both are O(B d) work, with no temporaries of table size;
``tests/test_kernels.py`` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

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
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                grad = p.grad
                if not grad.is_sparse:
                    state["step"] += 1
                    _adam(p, grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group)
                    continue
                rows = grad._indices()[0]
                if rows.numel() == 0:
                    continue
                if _on_cpu(p):
                    self._cpu_rows(p, rows, grad._values(), state, group)
                    state["step"] += 1
                    continue
                state["step"] += 1
                uniq, g = sum_rows(rows, grad._values())
                n = uniq.numel()
                bufs = _buffers(state, p, n, rows.numel())
                m, v = state["exp_avg"], state["exp_avg_sq"]
                p_rows, m_rows, v_rows = (b[:n] for b in bufs)
                for table, out in ((p, p_rows), (m, m_rows), (v, v_rows)):
                    torch.index_select(table, 0, uniq, out=out)
                _adam(p_rows, g, m_rows, v_rows, state["step"], group)
                _write_rows(p, uniq, p_rows)
                _write_rows(m, uniq, m_rows)
                _write_rows(v, uniq, v_rows)
        return loss

    def _cpu_rows(
        self, p: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, state: dict, group: dict
    ) -> None:
        """The same step by one compiled pass (``embrec.nn.kernels.adam_rows``): repeats summed through
        a row-to-position map, then Adam in place on each distinct row of the parameter and moments."""
        from embrec.nn import kernels

        table = p.detach().view(p.shape[0], -1).numpy()  # (R, d): 1-D tables as one column
        n = rows.numel()
        idx = rows.contiguous().numpy()
        scratch = self.__dict__.setdefault("_scratch", {})
        slot, acc, uniq = scratch.get(id(p)) or (None, None, None)
        if slot is None or slot.shape[0] != table.shape[0]:
            slot = kernels.new_slot(table.shape[0])
        if (
            acc is None
            or acc.shape[0] < n
            or acc.dtype != table.dtype
            or acc.shape[1] != table.shape[1]
        ):
            acc, uniq = (
                np.empty((n, table.shape[1]), dtype=table.dtype),
                np.empty(n, dtype=np.int64),
            )
        scratch[id(p)] = (slot, acc, uniq)
        b1, b2 = group["betas"]
        consts = kernels.adam_consts(
            group["lr"], b1, b2, group["eps"], float(state["step"]) + 1, table.dtype
        )
        kernels.adam_rows(
            table,
            state["exp_avg"].view(table.shape).numpy(),
            state["exp_avg_sq"].view(table.shape).numpy(),
            idx,
            values.contiguous().view(n, -1).numpy(),
            slot,
            acc,
            uniq,
            consts,
        )


def _on_cpu(p: torch.Tensor) -> bool:
    """Whether the compiled CPU kernels can update ``p`` in place (a contiguous float CPU tensor)."""
    return (
        p.device.type == "cpu" and p.is_contiguous() and p.dtype in (torch.float32, torch.float64)
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
    if _FUSED and p.is_contiguous() and p.device.type in ("cpu", "cuda"):
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
