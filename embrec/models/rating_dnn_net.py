"""The rating DNN's network: ``RatingNet`` (torch) and its loss terms for training, ``FixedRatingNet`` (numpy)
for scoring whole catalogues and the fold-in's Gauss-Newton pieces.

``RatingDNN`` (``embrec.models.rating_dnn``, where the network and its losses are described) trains a
``RatingNet``, then builds one ``FixedRatingNet`` from it per fitted model and keeps it: recommendation
(``rate_all``) and the fold-in of a new user (``gradient``) run on it without autograd.

The first dense layer (the first MLP layer, or the output layer when ``hidden=()``) acts on concat([p, q]),
so it splits into W_u·p + (W_v·q + b): the item half is precomputed for every item (``item_pre``,
(M+1, H)) and a user costs one (H, d) product; ``tail`` holds the layers after it ("relu" or (W, b)), the
output layer last. float64 for the fold-in's Gauss-Newton, float32 for scoring.
"""

from __future__ import annotations

import numpy as np
import torch

from embrec.memory import check_tables
from embrec.nn.regression import gravity as gravity_term

#: user x item pairs evaluated at once when scoring whole catalogues
CHUNK_PAIRS = 2**18


class RatingNet(torch.nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        hidden: tuple[int, ...],
        dropout: float,
        mean: float,
        init_std: float,
        product: bool,
        embedding_dropout: float,
    ) -> None:
        super().__init__()
        check_tables("factors", factors, {"user": n_users, "item": n_items})
        self.user = torch.nn.Embedding(n_users, factors)  # (N+1, d)
        self.item = torch.nn.Embedding(n_items, factors)  # (M+1, d)
        self.user_bias = torch.nn.Embedding(n_users, 1)  # (N+1, 1)
        self.item_bias = torch.nn.Embedding(n_items, 1)  # (M+1, 1)
        for table in (self.user, self.item):
            torch.nn.init.normal_(table.weight, std=init_std)
        for table in (self.user_bias, self.item_bias):
            torch.nn.init.zeros_(table.weight)
        layers: list[torch.nn.Module] = []
        self.product = product
        self.embedding_dropout = torch.nn.Dropout(embedding_dropout)
        width = 2 * factors
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = h
        self.mlp = torch.nn.Sequential(*layers)
        self.out = torch.nn.Linear(width, 1)
        self.register_buffer("mean", torch.tensor(float(mean)))

    def head(
        self, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor, biases: bool
    ) -> torch.Tensor:
        """Ratings from user rows p (..., d), item rows q (..., d) and biases (...)."""
        p, q = self.embedding_dropout(p), self.embedding_dropout(q)
        r = self.out(self.mlp(torch.cat([p, q], dim=-1))).squeeze(-1)  # (...)
        if self.product:
            r = r + (p * q).sum(-1)  # (...)
        return self.mean + bu + bi + r if biases else r

    def forward(self, users: torch.Tensor, items: torch.Tensor, biases: bool) -> torch.Tensor:
        return self.head(
            self.user(users),
            self.item(items),
            self.user_bias(users).squeeze(-1),
            self.item_bias(items).squeeze(-1),
            biases,
        )  # (B,)


def output_gravity_term(
    net: RatingNet, users: torch.Tensor, items: torch.Tensor, biases: bool, target: float
) -> torch.Tensor:
    """mean over the given (user, item) pairs of (f(u, i) − target)²: f is the whole prediction r̂
    (``biases=True``) or its interaction part o = r̂ − μ − b_u − b_i (``biases=False``)."""
    return (net(users, items, biases) - target).pow(2).mean()


def implicit_term(
    net: RatingNet, users: torch.Tensor, items: torch.Tensor, target: torch.Tensor, gravity: float
) -> torch.Tensor:
    """The observation head's loss: mean over the observed batch of (⟨R_u, Q_i⟩ − target)² + ``gravity`` ·
    1/(MN) Σ over all pairs ⟨R_u, Q_i⟩² (R = ``net.implicit_user``, Q the item table; Gram-matrix form,
    padding rows excluded)."""
    s = (net.implicit_user(users) * net.item(items)).sum(-1)  # (B,)
    out = (s - target).pow(2).mean()
    if gravity:
        out = out + gravity * gravity_term(net.implicit_user.weight[1:], net.item.weight[1:])
    return out


def _layers(modules: list[torch.nn.Module]) -> list[str | tuple[np.ndarray, np.ndarray]]:
    """The dense layers as (W, b) float64 arrays and "relu" markers; dropout is the identity at inference."""
    out: list[str | tuple[np.ndarray, np.ndarray]] = []
    for module in modules:
        if isinstance(module, torch.nn.Linear):
            out.append(
                (module.weight.detach().double().numpy(), module.bias.detach().double().numpy())
            )
        elif isinstance(module, torch.nn.ReLU):
            out.append("relu")
        elif not isinstance(module, torch.nn.Dropout):
            raise TypeError(
                f"rating-dnn fold-in cannot differentiate a {type(module).__name__} layer"
            )
    return out


class FixedRatingNet:
    """A trained ``RatingNet`` (user/item tables, biases, MLP, optional dot product) frozen as arrays.

    ``product``, ``biases``: as the model's options; ``rating_range``/``clip``: predictions are clipped
    to the training ratings' range when ``clip``."""

    def __init__(
        self,
        net: torch.nn.Module,
        factors: int,
        *,
        product: bool,
        biases: bool,
        rating_range: tuple[float, float],
        clip: bool,
    ) -> None:
        self.d, self.product, self.biases = factors, product, biases
        self.rating_range, self.clip = rating_range, clip
        (w1, b1), *tail = _layers([*net.mlp, net.out])
        d = factors
        self.q = net.item.weight.detach().double().numpy()  # (M+1, d)
        self.bi = net.item_bias.weight.detach().double().numpy()[:, 0]  # (M+1,)
        self.first_u = w1[:, :d]  # (H, d)
        self.item_pre = self.q @ w1[:, d:].T + b1  # (M+1, H)
        self.tail = tail
        self.mean = float(net.mean)
        self.first_u32 = self.first_u.astype(np.float32)
        self.item_pre32 = self.item_pre.astype(np.float32)
        self.tail32 = [
            x if x == "relu" else (x[0].astype(np.float32), x[1].astype(np.float32)) for x in tail
        ]
        self.q32, self.bi32 = self.q.astype(np.float32), self.bi.astype(np.float32)
        self.start = np.append(
            net.user.weight.detach()[1:].double().mean(0).numpy(),
            float(net.user_bias.weight.detach()[1:].double().mean()),
        )  # (d + 1,)

    def rate_all(self, p: np.ndarray, bu: np.ndarray) -> np.ndarray:
        """(B, M+1) predicted ratings of every item for user vectors p (B, d) and biases bu (B,), in chunks
        of ``CHUNK_PAIRS`` cells (no (B, M+1, 2d) concatenation)."""
        p = np.asarray(p, dtype=np.float32).reshape(-1, self.d)  # (B, d)
        bu = np.asarray(bu, dtype=np.float32).reshape(-1)  # (B,)
        n_items = self.q.shape[0]
        out = np.empty((p.shape[0], n_items), dtype=np.float32)
        users_per_chunk = max(1, CHUNK_PAIRS // n_items)
        for s in range(0, p.shape[0], users_per_chunk):
            pb = p[s : s + users_per_chunk]  # (b, d)
            h = self.item_pre32[None] + (pb @ self.first_u32.T)[:, None, :]  # (b, M+1, H)
            for layer in self.tail32:
                h = np.maximum(h, 0, out=h) if layer == "relu" else h @ layer[0].T + layer[1]
            r = h[..., 0]  # (b, M+1)
            if self.product:
                r = r + pb @ self.q32.T  # (b, M+1)
            if self.biases:
                r = (self.mean + bu[s : s + users_per_chunk, None]) + self.bi32[None] + r
            out[s : s + len(pb)] = np.clip(r, *self.rating_range) if self.clip else r
        return out

    def gradient(
        self, items: np.ndarray, r: np.ndarray, z: np.ndarray, l2: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and Gauss-Newton matrix of Σ (r̂ − r)² / n + l2 (|p|² + b_u²) at z = [p, b_u]: the
        network forward over the history's precomputed first-layer rows, then its Jacobian in p by one
        backward pass over the n rows (exact for the ReLU network)."""
        d, n = self.d, items.size
        p, bu = z[:d], z[d]
        h = self.item_pre[items] + self.first_u @ p  # (n, H): the first layer
        masks = []
        for layer in self.tail:
            if layer == "relu":
                masks.append(h > 0)
                h = h * masks[-1]
            else:
                h = h @ layer[0].T + layer[1]
        pred = h[:, 0]  # (n,)
        g = np.ones((n, 1))  # d r̂ / d h, backwards through the tail
        for layer in reversed(self.tail):
            g = g * masks.pop() if layer == "relu" else g @ layer[0]
        jp = g @ self.first_u  # (n, d)
        if self.product:
            q = self.q[items]  # (n, d)
            pred, jp = pred + q @ p, jp + q
        if self.biases:
            pred = pred + self.mean + bu + self.bi[items]
        j = np.concatenate([jp, np.full((n, 1), 1.0 if self.biases else 0.0)], axis=1)  # (n, d + 1)
        e = pred - r
        grad = 2.0 / n * (j.T @ e) + 2 * l2 * z
        gn = 2.0 / n * (j.T @ j) + (2 * l2 + 1e-9) * np.eye(d + 1)  # Gauss-Newton: PSD + ridge
        return grad, gn
