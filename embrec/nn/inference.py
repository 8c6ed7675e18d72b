"""NumPy inference for small PyTorch MLPs: the weights copied out once, then plain float32 matmuls.

A served request runs a tower on ONE row (a user's pooled history). For a (1, 64) input PyTorch's per-op
dispatch (module calls, autograd checks, tensor wrapping) costs far more than the arithmetic; the same
layers as NumPy matmuls cost a few microseconds::

    stack = DenseStack.from_sequential(net.user_mlp)     # once, after the weights are final
    out = stack(pooled)                                  # (B, d_in) float32 -> (B, d_out) float32

Equal to ``net.user_mlp.eval()(torch.from_numpy(pooled))`` within float32 rounding (tests/test_serve_fast.py).
Only ``Linear``, ``ReLU`` and ``Dropout`` (the identity in inference) are understood: anything else is a
TypeError, never a silently different function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DenseLayer:
    """``x @ weight_t + bias``, then ReLU when ``relu``; ``weight_t`` is (d_in, d_out), contiguous."""

    weight_t: np.ndarray
    bias: np.ndarray | None
    relu: bool


class DenseStack:
    """A chain of ``DenseLayer`` (an inference copy of a Linear/ReLU/Dropout ``nn.Sequential``)."""

    def __init__(self, layers: list[DenseLayer]) -> None:
        self.layers = layers

    @classmethod
    def from_sequential(cls, seq: nn.Sequential) -> DenseStack:
        """Copy the weights of ``seq`` (Linear, ReLU and Dropout modules only) to float32 NumPy arrays."""
        layers: list[DenseLayer] = []
        for module in seq:
            if isinstance(module, nn.Linear):
                w = module.weight.detach().to("cpu", torch.float32).numpy()  # (d_out, d_in)
                b = (
                    None
                    if module.bias is None
                    else module.bias.detach().to("cpu", torch.float32).numpy().copy()
                )
                layers.append(DenseLayer(np.ascontiguousarray(w.T), b, relu=False))
            elif isinstance(module, nn.ReLU):
                if not layers or layers[-1].relu:
                    raise TypeError("a ReLU must follow a Linear layer in a DenseStack")
                last = layers.pop()
                layers.append(DenseLayer(last.weight_t, last.bias, relu=True))
            elif not isinstance(module, nn.Dropout):  # dropout is the identity at inference
                raise TypeError(
                    f"DenseStack understands Linear, ReLU and Dropout; received {type(module).__name__}"
                )
        return cls(layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, d_in) float32 -> (B, d_out) float32."""
        out = np.asarray(x, dtype=np.float32)
        for layer in self.layers:
            out = out @ layer.weight_t  # (B, d_out)
            if layer.bias is not None:
                out += layer.bias
            if layer.relu:
                np.maximum(out, 0.0, out=out)
        return out
