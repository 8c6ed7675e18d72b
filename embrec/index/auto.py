"""Which retrieval index a model uses, and how that index is kept in the model directory.

    model.set_index("auto")                   # default: exact up to ANN_THRESHOLD items, FAISS HNSW above
    model.set_index("hnsw", ef_search=256)    # always FAISS HNSW, with options for FaissIndex
    model.set_index("exact")                  # always the exact blocked index

A model directory keeps its choice in ``index.json`` and every FAISS index it had built as uint8
arrays (``faiss.serialize_index``) in ``weights.safetensors``, so a served model answers its first
query without rebuilding a graph over millions of items.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError, ModelFileError, check_choice, check_positive_int
from embrec.index.exact import ExactIndex
from embrec.index.faiss_index import FaissIndex

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "exact", "hnsw", "ivf")
#: above this many items, backend "auto" answers from a FAISS HNSW index instead of the exact one
ANN_THRESHOLD = 200_000
#: above this many items, backend "auto" uses IVF (smaller and faster to build than HNSW)
IVF_THRESHOLD = 5_000_000
_PREFIX = "_index."


def check_index_config(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate a backend name and its options; returns the config a model stores."""
    check_choice("backend", backend, BACKENDS)
    opts = dict(options)
    if backend == "auto" and "threshold" in opts:
        opts["threshold"] = check_positive_int("threshold", opts["threshold"])
    probe = {k: v for k, v in opts.items() if k != "threshold"}
    if "threshold" in opts and backend != "auto":
        raise InvalidParameterError(f"threshold applies to backend 'auto' only; received backend {backend!r}.")
    try:  # construct once to check option names and values now, not at the first query
        if backend == "exact":
            ExactIndex(**probe)
        else:
            FaissIndex(**probe, **({"kind": backend} if backend in ("hnsw", "ivf") else {}))
    except TypeError as exc:
        raise InvalidParameterError(f"unknown option for index backend {backend!r}: {exc}.") from None
    return {"backend": backend, "options": opts}


def resolve_backend(config: dict[str, Any] | None, n_items: int) -> str:
    """The concrete backend ("exact", "hnsw" or "ivf") a config selects for ``n_items`` items."""
    config = config or {"backend": "auto", "options": {}}
    backend = config["backend"]
    if backend != "auto":
        return backend
    threshold = config["options"].get("threshold", ANN_THRESHOLD)
    if n_items <= threshold:
        return "exact"
    return "hnsw" if n_items <= IVF_THRESHOLD else "ivf"


def build_index(vectors: np.ndarray, ids: np.ndarray, *, measure: str,
                config: dict[str, Any] | None = None) -> ExactIndex | FaissIndex:
    """Index ``vectors`` (n, d) with ids under the backend ``config`` selects for n items."""
    backend = resolve_backend(config, len(vectors))
    options = {k: v for k, v in (config or {}).get("options", {}).items() if k not in ("threshold", "kind")}
    if backend == "exact":  # FAISS options given to "auto" do not apply to the exact index
        exact_options = options if (config or {}).get("backend") == "exact" else {}
        return ExactIndex(measure=measure, **exact_options).index(vectors, ids)
    logger.info("building a FAISS %s index (%s) over %d items", backend, measure, len(vectors))
    return FaissIndex(measure=measure, kind=backend, **options).index(vectors, ids)


# persistence with the model -----------------------------------------------------------------
def index_state(model: Any) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Arrays and ``index.json`` content for a model's index choice and its built FAISS indexes.

    When the choice is approximate for this catalogue, the recommend index is built first, so that
    the saved directory serves without a rebuild."""
    from embrec.models.base import EmbeddingModel

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
        raise ModelFileError("index.json must hold an object with 'config' and 'built'; the file is damaged.")
    config = meta.get("config")
    if config is not None:
        try:
            model.set_index(config["backend"], **config.get("options", {}))
        except (KeyError, TypeError, InvalidParameterError) as exc:
            raise ModelFileError(f"index.json holds an unusable index choice ({exc}).") from None
    for key, idx_meta in meta.get("built", {}).items():
        measure, _, which = key.partition(".")
        part = {name[len(f"{_PREFIX}{key}."):]: a for name, a in arrays.items()
                if name.startswith(f"{_PREFIX}{key}.")}
        index = FaissIndex.from_state(part, idx_meta)
        if len(index) != model.items_.n_ids:
            raise ModelFileError(f"the stored {key} index holds {len(index)} items; the model has "
                                 f"{model.items_.n_ids}. The directory is damaged.")
        model.use_index(index, measure=measure, candidates=which == "candidates")
