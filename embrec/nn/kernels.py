"""CPU kernels compiled with Numba for the per-batch work of the factorization models: one pass over a
batch's rows where PyTorch needs a dozen whole-batch operations (each a pass over memory, a temporary
and a dispatch).

    loss, n_u, n_i = bpr_rows(P, Q, b, users, pos, neg, reg, bias_reg, maps, uniq_u, g_p, uniq_i, g_q,
                              g_b, consts)  # loss + gradients summed per distinct row
    adam_rows(tables, moments, grads, consts, rows, slot, acc, uniq)  # lazy Adam in place, 1-2 tables
    bpr_fold_pairs(e, hist, w, pi, col, row)  # BPR fold-in's history x catalogue sums, one pass
    top_k_update(scores, base, vals, pos)  # the exact index's running top k over a block of scores

Arrays are NumPy views of the CPU tensors (no copies). ``bpr_rows`` is the value and gradient of
``embrec.nn.pairwise.BPRFactorLoss`` (its PyTorch forward/backward is the reference, used on other
devices), summed per distinct row through int32 row-to-position maps (as ``adam_rows`` does);
``adam_rows`` is ``embrec.nn.optim.RowAdam``'s step on a sparse row gradient: the repeats of a
row are summed in a batch-sized buffer found through ``slot`` (a table-sized int32 map from row to
position, all -1 between calls, so no sort is needed), then Adam updates each distinct row of the
parameter and its two moments (side by side in one row) in place (no gather into buffers and
write-back). Every kernel is
single-threaded (one thread, as the training loop), compiled on first use and cached on disk.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# reassociation lets the length-d dot products use SIMD lanes; no assumption about NaN or infinities
_MATH = {"reassoc", "contract"}
#: how many rows ahead the kernels prefetch: random rows of large tables are cache misses, and a
#: prefetch lets several be in flight while the current row is computed (1.3-1.6x on Adam's step)
AHEAD = 6


def _prefetcher(write: int):
    """An intrinsic ``prefetch(table, i, j)``: a hint that the cache line of ``table[i, j]`` (2-D) will be
    read (``write`` 0) or written (1) soon; LLVM's ``llvm.prefetch``, no effect on the values."""

    @intrinsic
    def prefetch(typingctx, table, i, j):
        if not isinstance(table, types.Array) or table.ndim != 2:
            return None

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i_, j_ = (
                context.cast(builder, v, t, types.intp)
                for v, t in zip(args[1:], signature.args[1:])
            )
            ptr = cgutils.get_item_pointer(
                context, builder, signature.args[0], ary, [i_, j_], wraparound=False
            )
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0i8",
            )
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(write), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(table, i, j), codegen

    return prefetch


_prefetch_read, _prefetch_write = _prefetcher(0), _prefetcher(1)


@numba.njit(inline="always")
def _fetch_row(table, row, write):
    """Prefetch every cache line of ``table[row]``."""
    step = max(64 // table.itemsize, 1)
    for c in range(0, table.shape[1], step):
        if write:
            _prefetch_write(table, row, c)
        else:
            _prefetch_read(table, row, c)


@numba.njit(inline="always")
def _slot_of(row, slot, uniq, n, grads):
    """The position of ``row`` among the distinct rows found so far (``n`` of them): a new row gets the
    next one, with its gradient row zeroed. Returns (position, new n)."""
    s = slot[row]
    if s >= 0:
        return s, n
    slot[row] = n
    uniq[n] = row
    g = grads[n]
    for c in range(g.shape[0]):
        g[c] = 0
    return n, n + 1


@numba.njit(cache=True, fastmath=_MATH, error_model="numpy", nogil=True)
def bpr_rows(
    p_tab, q_tab, b_tab, users, pos, neg, reg, bias_reg, maps, uniq_u, g_p, uniq_i, g_q, g_b, consts
):
    """The BPR batch loss ``mean softplus(-x) + reg (|p_u|² + |q_i|² + mean_k |q_jk|²) / B + bias_reg
    (b_i² + mean_k b_jk²) / B``, ``x = p_u · (q_i - q_jk) + b_i - b_jk``, and its gradients summed per
    distinct row, in the order the rows are first drawn: users ``uniq_u`` (>= B,) with ``g_p`` (>= B, d),
    items ``uniq_i`` (>= B + B K,) with ``g_q`` (>= B + B K, d) and ``g_b`` (>= B + B K,). ``maps`` =
    (user map (U,), item map (I,)): int32 row-to-position maps, all -1 on entry and exit. Returns
    (loss, distinct users, distinct items)."""
    n_b, n_k = neg.shape
    d = p_tab.shape[1]
    slot_u, slot_i = maps
    # the factors in the tables' float type (``bpr_consts``), so the arithmetic stays in it
    scale, r, rb, rk, rbk, one = consts[0], consts[1], consts[2], consts[3], consts[4], consts[5]
    zero = one - one
    # rows checked in a pass of their own (a raise inside the main loop makes it ~1.5x slower)
    for t in range(n_b):
        if users[t] < 0 or users[t] >= p_tab.shape[0] or pos[t] < 0 or pos[t] >= q_tab.shape[0]:
            raise IndexError("bpr_rows: a user or positive item row lies outside its table")
        for k in range(n_k):
            if neg[t, k] < 0 or neg[t, k] >= q_tab.shape[0]:
                raise IndexError("bpr_rows: a negative item row lies outside the item table")
    total = 0.0
    l2 = 0.0
    l2b = 0.0
    n_u = 0
    n_i = 0
    for t in range(n_b):
        if t + AHEAD < n_b:
            _fetch_row(p_tab, users[t + AHEAD], False)
            _fetch_row(q_tab, pos[t + AHEAD], False)
            for k in range(n_k):
                _fetch_row(q_tab, neg[t + AHEAD, k], False)
        u, i = users[t], pos[t]
        su, n_u = _slot_of(u, slot_u, uniq_u, n_u, g_p)
        si, n_new = _slot_of(i, slot_i, uniq_i, n_i, g_q)
        if n_new > n_i:
            g_b[si] = zero
            n_i = n_new
        p, qi = p_tab[u], q_tab[i]
        gp = g_p[su]
        bi = b_tab[i]
        gsum = zero
        for k in range(n_k):
            j = neg[t, k]
            sj, n_new = _slot_of(j, slot_i, uniq_i, n_i, g_q)
            if n_new > n_i:
                g_b[sj] = zero
                n_i = n_new
            qj = q_tab[j]
            x = b_tab[i] - b_tab[j]
            for c in range(d):
                x += p[c] * (qi[c] - qj[c])
            # softplus(-x) and sigmoid(-x), stable for any x (log(1 + e), not log1p: 1.3x faster a
            # batch here; it differs only where e < 1e-7, by less than e, in the reported loss)
            e = math.exp(-abs(x))
            total += math.log(one + e) + max(-x, zero)
            s = one / (one + e) if x < zero else e / (one + e)  # σ(-x)
            gx = -s * scale  # d loss / d x
            gsum += gx
            gj = g_q[sj]
            for c in range(d):
                gp[c] += gx * (qi[c] - qj[c])
                gj[c] += rk * qj[c] - gx * p[c]
            bj = b_tab[j]
            g_b[sj] += rbk * bj - gx
            s_j = zero
            for c in range(d):
                s_j += qj[c] * qj[c]
            l2 += s_j / n_k
            l2b += bj * bj / n_k
        s_p = zero
        s_i = zero
        gi = g_q[si]
        for c in range(d):
            s_p += p[c] * p[c]
            s_i += qi[c] * qi[c]
            gp[c] += r * p[c]
            gi[c] += gsum * p[c] + r * qi[c]
        g_b[si] += gsum + rb * bi
        l2 += s_p + s_i
        l2b += bi * bi
    for s in range(n_u):
        slot_u[uniq_u[s]] = -1
    for s in range(n_i):
        slot_i[uniq_i[s]] = -1
    return total * scale + reg * l2 / n_b + bias_reg * l2b / n_b, n_u, n_i


@numba.njit(inline="always")
def _zero_row(out):
    for c in range(out.shape[0]):
        out[c] = 0


@numba.njit(inline="always")
def _add_row(out, x):
    for c in range(out.shape[0]):
        out[c] += x[c]


@numba.njit(inline="always")
def _adam_row(p, m, v, g, consts):
    """One Adam step of a row ``p`` with moments ``m``, ``v`` and gradient ``g``, in place; ``consts``
    from ``adam_consts`` (in the table's float type, so the arithmetic stays in it)."""
    step_size, inv_root_c2, eps, b1, b2, w1, w2 = (
        consts[0],
        consts[1],
        consts[2],
        consts[3],
        consts[4],
        consts[5],
        consts[6],
    )
    for c in range(p.shape[0]):
        gc = g[c]
        mc = b1 * m[c] + w1 * gc
        vc = b2 * v[c] + w2 * gc * gc
        m[c] = mc
        v[c] = vc
        p[c] -= step_size * mc / (np.sqrt(vc) * inv_root_c2 + eps)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def adam_rows(tables, moments, grads, consts, rows, slot, acc, uniq):
    """Lazy Adam on the rows of two tables that share their drawn rows (e.g. item factors and item
    biases): ``tables`` = (table (R, d), table2 (R, d2)) (d2 may be 0: one table), ``moments`` = their
    Adam moments (R, 2 d) and (R, 2 d2) (a row's mean, then its second moment: one run of memory per
    row), ``grads`` (n, d) and (n, d2) for the rows ``rows`` (n,) (repeats allowed: summed first, in
    the order drawn; rows all distinct, as the BPR loss gives them, are used as they are), ``consts`` =
    (``adam_consts`` of each table). ``slot`` (R,) int32 is all -1 on
    entry and exit; ``acc`` = two (>= n, d) / (>= n, d2) and ``uniq`` (>= n,) are scratch. Returns the
    number of distinct rows."""
    table, table2 = tables
    mv, mv2 = moments
    grad, grad2 = grads
    acc1, acc2 = acc
    d, d2 = table.shape[1], table2.shape[1]
    n_u = 0
    for t in range(rows.shape[0]):  # checked first: nothing is written when one is out of range
        if rows[t] < 0 or rows[t] >= table.shape[0] or rows[t] >= table2.shape[0]:
            raise IndexError("adam_rows: a gradient row lies outside the table")
    for t in range(rows.shape[0]):
        row = rows[t]
        if slot[row] < 0:
            slot[row] = n_u
            uniq[n_u] = row
            n_u += 1
    if n_u == rows.shape[0]:  # distinct rows (the BPR loss sums its own): nothing to sum
        src1, src2 = grad, grad2
    else:  # repeats summed in the order drawn
        for s in range(n_u):
            _zero_row(acc1[s])
            _zero_row(acc2[s])
        for t in range(rows.shape[0]):
            s = slot[rows[t]]
            _add_row(acc1[s], grad[t])
            _add_row(acc2[s], grad2[t])
        src1, src2 = acc1, acc2
    for s in range(n_u):
        if s + AHEAD < n_u:
            ahead = uniq[s + AHEAD]
            _fetch_row(table, ahead, True)
            _fetch_row(mv, ahead, True)
            _fetch_row(table2, ahead, True)
            _fetch_row(mv2, ahead, True)
        row = uniq[s]
        slot[row] = -1
        _adam_row(table[row], mv[row, :d], mv[row, d:], src1[s], consts[0])
        _adam_row(table2[row], mv2[row, :d2], mv2[row, d2:], src2[s], consts[1])
    return n_u


@numba.njit(cache=True, fastmath=_MATH, error_model="numpy", nogil=True)
def bpr_fold_pairs(e, hist, w, pi, col, row):
    """BPR fold-in's pair sums in one pass over the history x catalogue cells, none stored: with
    σ_kj = e_j / (e_j + e_hist[k]) (= sigmoid(s_j - s_i) for e = exp(s)), adds Σ_k w_k σ_kj to ``col[j]``
    and writes Σ_j π_j σ_kj to ``row[k]``. e, w, pi, col, row float32; hist int64 rows of e."""
    n = e.shape[0]
    for k in range(hist.shape[0]):
        ei = e[hist[k]]
        wk = w[k]
        acc = np.float32(0.0)
        for j in range(n):
            sig = e[j] / (e[j] + ei)
            col[j] += wk * sig
            acc += sig * pi[j]
        row[k] = acc


@numba.njit(cache=True, error_model="numpy", nogil=True)
def top_k_update(scores, base, vals, pos):
    """Fold a (B, n) block of scores into each row's running top k: ``vals`` (B, k) float32, best first
    (-inf where empty), ``pos`` (B, k) int64 positions (``base`` + column). One pass, the block read once
    (it is fresh from the product, in cache): a score enters only when it beats the row's k-th, so equal
    scores keep the lower position first (embrec's tie rule), and NaN and -inf never enter."""
    b, n = scores.shape
    k = vals.shape[1]
    for r in range(b):
        row, v, p = scores[r], vals[r], pos[r]
        kth = v[k - 1]
        for j in range(n):
            x = row[j]
            if x > kth:
                i = k - 1
                while (
                    i > 0 and v[i - 1] < x
                ):  # after the equal ones already in: their positions are lower
                    v[i] = v[i - 1]
                    p[i] = p[i - 1]
                    i -= 1
                v[i] = x
                p[i] = base + j
                kth = v[k - 1]


def bpr_consts(n_b: int, n_k: int, reg: float, bias_reg: float, dtype: np.dtype) -> np.ndarray:
    """``bpr_rows``'s factors: 1 / (B K), 2 reg / B, 2 bias_reg / B, the last two over K, and 1."""
    r, rb = 2.0 * reg / n_b, 2.0 * bias_reg / n_b
    return np.array([1.0 / (n_b * n_k), r, rb, r / n_k, rb / n_k, 1.0], dtype=dtype)


def adam_consts(
    lr: float, b1: float, b2: float, eps: float, step: float, dtype: np.dtype
) -> np.ndarray:
    """``adam_rows``'s factors for Adam's step count ``step`` (after this step): the step size
    lr / (1 - b1^t), 1 / sqrt(1 - b2^t), eps, b1, b2, 1 - b1, 1 - b2."""
    return np.array(
        [lr / (1.0 - b1**step), 1.0 / math.sqrt(1.0 - b2**step), eps, b1, b2, 1.0 - b1, 1.0 - b2],
        dtype=dtype,
    )


def new_slot(rows: int) -> np.ndarray:
    """The (rows,) int32 row-to-position map ``adam_rows`` needs, all -1."""
    return np.full(rows, -1, dtype=np.int32)


# 2^64 / golden ratio: multiplicative (Fibonacci) hashing
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(inline="always")
def _home(key, shift):
    return np.int64((np.uint64(key) * _FIBONACCI) >> shift)


@numba.njit(cache=True, nogil=True)
def keyset_insert(slots, bits, keys):
    """Insert non-negative ``keys`` into the open-addressing table ``slots`` (2^bits int64, -1 = empty;
    linear probing from the Fibonacci hash, a repeated key stored once)."""
    mask = np.int64(slots.shape[0] - 1)
    shift = np.uint64(64 - bits)
    for t in range(keys.shape[0]):
        key = keys[t]
        pos = _home(key, shift)
        while slots[pos] != -1 and slots[pos] != key:
            pos = (pos + 1) & mask
        slots[pos] = key


@numba.njit(cache=True, nogil=True)
def keyset_contains(slots, bits, query, out):
    """``out[t]`` = whether ``query[t]`` is in the table ``keyset_insert`` filled (probes until the key
    or an empty slot; the home slot of a query a few ahead is prefetched)."""
    mask = np.int64(slots.shape[0] - 1)
    shift = np.uint64(64 - bits)
    table = slots.reshape((-1, 1))
    n = query.shape[0]
    for t in range(n):
        if t + AHEAD < n:
            _prefetch_read(table, _home(query[t + AHEAD], shift), 0)
        key = query[t]
        pos = _home(key, shift)
        found = False
        while True:
            s = slots[pos]
            if s == key:
                found = True
                break
            if s == -1:
                break
            pos = (pos + 1) & mask
        out[t] = found
