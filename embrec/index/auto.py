"""Which retrieval index serves a catalogue of vectors: the backend choice and the builder.

    model.set_index("auto")                   # default: exact up to ANN_THRESHOLD items, FAISS HNSW above
    model.set_index("hnsw", ef_search=256)    # always FAISS HNSW, with options for FaissIndex
    model.set_index("exact")                  # always the exact blocked index

The index layer knows vectors and integer ids only, never the model classes; how a model directory
keeps its index choice and its built FAISS indexes is ``embrec.models.index_store``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from embrec.errors import InvalidParameterError, check_choice, check_positive_int
from embrec.index.exact import ExactIndex
from embrec.index.faiss_index import FaissIndex

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "exact", "hnsw", "ivf")
#: above this many items, backend "auto" answers from a FAISS HNSW index instead of the exact one
ANN_THRESHOLD = 200_000
#: above this many items, backend "auto" uses IVF (smaller and faster to build than HNSW)
IVF_THRESHOLD = 5_000_000


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
