"""How a model directory keeps its retrieval index: the choice in ``index.json`` and every FAISS index
the model had built as uint8 arrays (``faiss.serialize_index``) in ``weights.safetensors``, so a served
model answers its first query without rebuilding a graph over millions of items.

This lives with the models (it reads a model's index cache); ``embrec.index`` depends on vectors and
ids only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError, ModelFileError
from embrec.index.auto import resolve_backend
from embrec.index.faiss_index import FaissIndex
from embrec.models.base import EmbeddingModel

_PREFIX = "_index."


def index_state(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Arrays and ``index.json`` content for a model's index choice and its built FAISS indexes.

    When the choice is approximate for this catalogue, the recommend index is built first, so that
    the saved directory serves without a rebuild."""
    if not isinstance(model, EmbeddingModel):
        return {}, None
    config = model.__dict__.get("_index_config")
    cache = model.__dict__.get("_indexes", {})
    if resolve_backend(config, model.items_.n_ids) != "exact":
        model.index_for("dot")
    arrays: dict[str, np.ndarray] = {}
    built: dict[str, Any] = {}
    for (measure, candidates), index in cache.items():
        if isinstance(index, FaissIndex):
            key = f"{measure}.{'candidates' if candidates else 'items'}"
            idx_arrays, built[key] = index.to_state()
            arrays.update({f"{_PREFIX}{key}.{name}": a for name, a in idx_arrays.items()})
    if config is None and not built:
        return {}, None
    return arrays, {"config": config, "built": built}


def pop_index_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Remove and return the index arrays from a loaded weights dict (before the model sees it)."""
    return {k: arrays.pop(k) for k in [k for k in arrays if k.startswith(_PREFIX)]}


def restore_indexes(model: Any, meta: Any, arrays: dict[str, np.ndarray]) -> None:
    """Give a loaded model back its index choice and its FAISS indexes (``index_state``'s output)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("built", {}), dict):
        raise ModelFileError(
            "index.json must hold an object with 'config' and 'built'; the file is damaged."
        )
    config = meta.get("config")
    if config is not None:
        try:
            model.set_index(config["backend"], **config.get("options", {}))
        except (KeyError, TypeError, InvalidParameterError) as exc:
            raise ModelFileError(f"index.json holds an unusable index choice ({exc}).") from None
    for key, idx_meta in meta.get("built", {}).items():
        measure, _, which = key.partition(".")
        part = {
            name[len(f"{_PREFIX}{key}.") :]: a
            for name, a in arrays.items()
            if name.startswith(f"{_PREFIX}{key}.")
        }
        index = FaissIndex.from_state(part, idx_meta)
        if len(index) != model.items_.n_ids:
            raise ModelFileError(
                f"the stored {key} index holds {len(index)} items; the model has "
                f"{model.items_.n_ids}. The directory is damaged."
            )
        model.use_index(index, measure=measure, candidates=which == "candidates")
