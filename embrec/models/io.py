"""Model directories: JSON + safetensors, written atomically, never pickled.

    DIR/
      config.json          {"format": "embrec-model", "format_version": 1, "class": "BPR", "params": {...},
                            "embrec_version": "0.1.0", "data_fingerprint": "sha256...", "created": "..."}
      users.json items.json  the IdVocabs (raw id of every row)
      weights.safetensors  learned arrays (the model's, plus seen_ histories and item_counts_)
      extra.json           learned JSON state (feature vocabularies, texts...)
      metrics.json         evaluation results;  history.json  per-epoch training history
      index.json           (optional) the retrieval index choice; built FAISS indexes are uint8 arrays
                           "_index.*" in weights.safetensors (``embrec.index.auto``)
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import ModelFileError

logger = logging.getLogger(__name__)

FORMAT = "embrec-model"
FORMAT_VERSION = 1
_BASE_KEYS = ("_base.seen.values", "_base.seen.offsets", "_base.item_counts")


def save_model(model: Any, path: str | Path) -> Path:
    """Write ``model`` to directory ``path`` via a temporary sibling directory and a rename."""
    from embrec import __version__
    from embrec.models.registry import name_of

    model._check_fitted()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": name_of(type(model)),
            "params": to_plain(model.get_params()),
            "embrec_version": __version__,
            "data_fingerprint": model.fingerprint_,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        arrays = {k: np.ascontiguousarray(v) for k, v in model._get_state().items()}
        arrays["_base.seen.values"] = model.seen_.values
        arrays["_base.seen.offsets"] = model.seen_.offsets
        arrays["_base.item_counts"] = model.item_counts_
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "users.json", model.users_.to_dict())
        _write_json(tmp / "items.json", model.items_.to_dict())
        _write_json(tmp / "extra.json", to_plain(model._get_extra()))
        _write_json(tmp / "metrics.json", to_plain(model.metrics_))
        _write_json(tmp / "history.json", to_plain(model.history_))
        from embrec.index.auto import index_state

        index_arrays, index_meta = index_state(model)  # the index choice and built FAISS indexes
        if index_meta is not None:
            arrays.update(index_arrays)
            _write_json(tmp / "index.json", index_meta)
        save_file(arrays, str(tmp / "weights.safetensors"))
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model(path: str | Path) -> Any:
    """Read a model directory written by ``save_model``; says what is wrong with a damaged one."""
    from embrec.models.registry import class_of

    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"model directory {str(path)!r} does not exist or is not a directory.")
    config = _read_json(path, "config.json")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is not an embrec model directory (config.json has no "
                             f"'format': '{FORMAT}').")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{str(path)!r} has model format version {config.get('format_version')!r}; "
                             f"this embrec reads version {FORMAT_VERSION}.")
    cls = class_of(config.get("class"))
    try:
        model = cls(**_portable_params(config.get("params", {})))
    except TypeError as exc:
        raise ModelFileError(f"the parameters in {str(path / 'config.json')!r} do not fit {cls.__name__}: {exc}.") from None
    try:
        arrays = load_file(str(path / "weights.safetensors"))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {str(path / 'weights.safetensors')!r}: {exc}.") from None
    missing = [k for k in _BASE_KEYS if k not in arrays]
    if missing:
        raise ModelFileError(f"{str(path / 'weights.safetensors')!r} lacks arrays {missing}; the file is damaged.")
    from embrec.index.auto import pop_index_arrays, restore_indexes

    index_arrays = pop_index_arrays(arrays)
    model.users_ = IdVocab.from_dict(_read_json(path, "users.json"))
    model.items_ = IdVocab.from_dict(_read_json(path, "items.json"))
    model.seen_ = Ragged(arrays.pop("_base.seen.values"), arrays.pop("_base.seen.offsets"))
    model.item_counts_ = arrays.pop("_base.item_counts")
    model.fingerprint_ = config.get("data_fingerprint", "")
    model.metrics_ = _read_json(path, "metrics.json", default={})
    model.history_ = _read_json(path, "history.json", default=[])
    if len(model.seen_) != model.users_.size or model.item_counts_.shape != (model.items_.size,):
        raise ModelFileError(f"{str(path)!r}: vocabulary sizes do not match the stored arrays; the directory is damaged.")
    try:
        model._set_state(arrays, _read_json(path, "extra.json", default={}))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{str(path)!r}: the stored weights do not fit {cls.__name__} ({exc}).") from None
    if (path / "index.json").exists():
        restore_indexes(model, _read_json(path, "index.json"), index_arrays)
    return model


def _portable_params(params: dict[str, Any]) -> dict[str, Any]:
    """A model trained with device="cuda" loads on a machine without CUDA: it runs on the CPU there."""
    device = params.get("device")
    if isinstance(device, str) and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("the model was saved with device=%r; no CUDA device here, so it runs on the CPU", device)
            return {**params, "device": "cpu"}
    return params


def _replace_dir(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(to_plain(data), fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))


def _read_json(path: Path, name: str, default: Any = None) -> Any:
    f = path / name
    if not f.exists():
        if default is not None:
            return default
        raise ModelFileError(f"model directory {str(path)!r} lacks {name}.")
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{str(f)!r} is not valid JSON ({exc}); the model directory is damaged.") from None


def to_plain(x: Any) -> Any:
    """numpy scalars/arrays and nested containers -> plain JSON-able Python values."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
