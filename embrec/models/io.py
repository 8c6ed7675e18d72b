"""Model directories: JSON + safetensors, versioned and published atomically, checksummed, never pickled.

    DIR/
      current -> .versions/<id>     the pointer to the last whole save (``embrec.models.store``)
      .versions/<id>/
        config.json          {"format": "embrec-model", "format_version": 2, "class": "BPR", "params": {...},
                              "embrec_version": "0.1.0", "data_fingerprint": "sha256...", "created": "..."}
        manifest.json        size and sha256 of every other file (checked by every load)
        users.json items.json  the IdVocabs (raw id of every row)
        weights.safetensors  learned arrays (the model's, plus seen_ histories and item_counts_)
        extra.json           learned JSON state (feature vocabularies, texts...) and the item labels
                             ("_base.item_labels": one display label per item, in items.json order)
        metrics.json         evaluation results;  history.json  per-epoch training history
        index.json           (optional) the retrieval index choice; built FAISS indexes are uint8 arrays
                             "_index.*" in weights.safetensors (``embrec.models.index_store``)

A directory of the first layout (format_version 1: the files directly in DIR/, no manifest) still loads,
and saving over it turns it into the layout above. What is guaranteed: docs/model-directory.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from embrec.data.ragged import Ragged
from embrec.data.vocab import IdVocab
from embrec.errors import EmbrecError, ModelFileError, ModelStateError, ModelVersionWarning
from embrec.models import store
from embrec.models.outpath import check_out_path

logger = logging.getLogger(__name__)

FORMAT = "embrec-model"
#: 2: versioned directory with manifest.json; 1: the files directly in the directory, no manifest
FORMAT_VERSION = 2
_BASE_KEYS = ("_base.seen.values", "_base.seen.offsets", "_base.item_counts")
#: a load re-resolves the pointer this many times when the version it read was replaced and removed under it
_LOAD_ATTEMPTS = 50
_INDEX_PREFIX = "_index."  # arrays of built FAISS indexes (embrec.models.index_store)
_FEATURE_ARRAY = re.compile(r"(^|\.)(item|user)_features\.")


def save_model(model: Any, path: str | Path) -> Path:
    """Write ``model`` as a new version of directory ``path`` and switch ``path``'s pointer to it atomically.

    ``path`` must be new, empty, or an embrec model directory (``check_out_path``); anything else is refused
    before a byte is written. Non-finite learned arrays are refused (ModelStateError naming the array)."""
    from embrec import __version__
    from embrec.models.base import EmbeddingModel
    from embrec.models.registry import name_of

    model._check_fitted()
    path = check_out_path(path, name="path")
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
    check_finite(arrays, lambda name, bad, size: ModelStateError(
        f"cannot save the model: learned array {name!r} holds {bad} non-finite values (NaN or inf) among "
        f"{size}; the fit diverged (try a lower learning rate or more regularisation)."))
    index_meta = None
    if isinstance(model, EmbeddingModel):  # (other models need no index, nor faiss imported)
        from embrec.models.index_store import index_state

        index_arrays, index_meta = index_state(model)  # the index choice and built FAISS indexes
        arrays.update(index_arrays)
    documents = {"config.json": config, "users.json": model.users_.to_dict(), "items.json": model.items_.to_dict(),
                 "extra.json": to_plain(model._extra_state()), "metrics.json": to_plain(model.metrics_),
                 "history.json": to_plain(model.history_)}
    if index_meta is not None:
        documents["index.json"] = index_meta
    writer = None
    try:
        writer = store.VersionWriter(path)
        for name, doc in documents.items():
            writer.write_json(name, doc)
        save_file(arrays, str(writer.tmp / "weights.safetensors"))
        writer.add_file("weights.safetensors")
        writer.publish()
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        if isinstance(exc, OSError) and not isinstance(exc, EmbrecError):
            raise ModelFileError(f"cannot write the model directory {str(path)[:80]!r} "
                                 f"({exc.strerror or exc}).") from None
        raise
    return path


def check_finite(arrays: dict[str, np.ndarray], error: Any) -> None:
    """Raise ``error(name, n_bad, size)`` for the first learned floating-point array holding NaN or inf.

    Feature tables kept with a model (``item_features.*``, ``user_features.*``) are data, not learned: a
    missing numeric feature is NaN there, so they are not checked."""
    for name, a in arrays.items():
        if _FEATURE_ARRAY.search(name):
            continue
        if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            raise error(name, int(a.size - np.isfinite(a).sum()), int(a.size))


def model_files(path: str | Path) -> Path:
    """The folder holding the files of the model saved in ``path`` (its current version), for readers
    that want one file (e.g. ``model_files(d) / "users.json"``). ``embrec.load`` is the whole, checked read."""
    return store.resolve(path)


def load_model(path: str | Path) -> Any:
    """Read a model directory written by ``save_model``: one whole version, checked against its manifest."""
    path = Path(path)
    for attempt in range(_LOAD_ATTEMPTS):
        before = _pointer_or_error(path)
        try:
            folder = store.resolve(path)
            model = _load_version(folder)
        except ModelFileError:
            if attempt + 1 == _LOAD_ATTEMPTS or _pointer_or_error(path) == before:
                raise
            logger.debug("%s was replaced while it was read; reading the new version", path)
            continue
        # files of the first layout are removed by the save that replaces them: read the new version when
        # that happened during this read (a file read as absent may have been deleted, not absent)
        if folder != path or _pointer_or_error(path) == before:
            return model
    raise ModelFileError(f"model directory {str(path)[:80]!r} was replaced {_LOAD_ATTEMPTS} times while it was "
                         "read; try again when the saves stop.")


def _pointer_or_error(path: Path) -> str | None:
    try:
        return store.pointer_target(path) if path.is_dir() else None
    except ModelFileError as exc:
        return f"error: {exc}"


def _load_version(folder: Path) -> Any:
    from embrec.models.registry import class_of

    has_manifest = folder.parent.name == store.VERSIONS or (folder / store.MANIFEST).exists()
    # with a manifest, the JSON files are parsed from the very bytes that were checked, and a file the
    # manifest does not list is absent by design (not missing)
    checked = store.verify(folder) if has_manifest else None

    def _read_json(folder: Path, name: str, default: Any = None) -> Any:
        if checked is None:
            return read_json(folder, name, default)
        if name not in checked:
            if default is not None:
                return default
            raise ModelFileError(f"model directory {str(folder)!r} lacks {name}.")
        return _parse_json(folder / name, checked[name])

    config = _read_json(folder, "config.json")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{str(folder)!r} is not an embrec model directory (config.json has no "
                             f"'format': '{FORMAT}').")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise ModelFileError(f"{str(folder / 'config.json')!r} has model format version {to_plain(version)!r}; "
                             f"this embrec reads versions 1 to {FORMAT_VERSION}"
                             + (" (upgrade embrec to read it)." if newer else "."))
    if version >= 2 and not has_manifest:
        raise ModelFileError(f"{str(folder / store.MANIFEST)!r} is missing; the model directory is damaged.")
    _warn_if_newer(folder, config.get("embrec_version"))
    try:
        cls = class_of(config.get("class"))
    except ModelFileError as exc:
        raise ModelFileError(f"{str(folder / 'config.json')!r}: {exc}") from None
    try:
        model = cls(**_portable_params(config.get("params", {})))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"the parameters in {str(folder / 'config.json')!r} do not fit {cls.__name__}: "
                             f"{exc}") from None
    weights = folder / "weights.safetensors"
    try:
        arrays = load_file(str(weights))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {str(weights)!r}: {exc}.") from None
    missing = [k for k in _BASE_KEYS if k not in arrays]
    if missing:
        raise ModelFileError(f"{str(weights)!r} lacks arrays {missing}; the file is damaged.")
    check_finite(arrays, lambda name, bad, size: ModelFileError(
        f"{str(weights)!r} is damaged: array {name!r} holds {bad} non-finite values (NaN or inf) among {size}."))
    index_arrays = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith(_INDEX_PREFIX)]}
    model.users_ = _read_vocab(folder, "users.json", _read_json(folder, "users.json"))
    model.items_ = _read_vocab(folder, "items.json", _read_json(folder, "items.json"))
    model.seen_ = Ragged(arrays.pop("_base.seen.values"), arrays.pop("_base.seen.offsets"))
    model.item_counts_ = arrays.pop("_base.item_counts")
    model.fingerprint_ = config.get("data_fingerprint", "")
    model.saved_config_ = config  # what the loaded version's config.json said (serve's /healthz shows it)
    model.metrics_ = _read_json(folder, "metrics.json", default={})
    model.history_ = _read_json(folder, "history.json", default=[])
    if len(model.seen_) != model.users_.size or model.item_counts_.shape != (model.items_.size,):
        raise ModelFileError(f"{str(folder)!r}: vocabulary sizes do not match the stored arrays; the directory "
                             "is damaged.")
    try:
        model._restore_state(arrays, _read_json(folder, "extra.json", default={}))
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ModelFileError(f"{str(weights)!r}: the stored weights do not fit {cls.__name__} ({exc}).") from None
    index_meta = _read_json(folder, "index.json", default=False)
    if index_meta is not False:
        from embrec.models.index_store import restore_indexes

        try:
            restore_indexes(model, index_meta, index_arrays)
        except ModelFileError as exc:
            raise ModelFileError(f"{str(folder / 'index.json')!r}: {exc}") from None
    return model


def _read_vocab(folder: Path, name: str, data: Any) -> IdVocab:
    try:
        return IdVocab.from_dict(data)
    except (EmbrecError, TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{str(folder / name)!r} is damaged: {exc}") from None


def _warn_if_newer(folder: Path, saved: Any) -> None:
    from embrec import __version__

    if _version_tuple(saved) > _version_tuple(__version__):
        warnings.warn(f"{str(folder / 'config.json')!r} was written by embrec {str(saved)[:40]}, newer than this "
                      f"embrec {__version__}; its format version is one this embrec reads, so it loads, but "
                      "upgrade embrec if anything looks wrong.", ModelVersionWarning, stacklevel=4)


def _version_tuple(text: Any) -> tuple[int, ...]:
    """"0.10.2rc1" -> (0, 10, 2); anything unparseable -> ()."""
    if not isinstance(text, str):
        return ()
    parts = []
    for piece in text.split(".")[:4]:
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


#: hyper-parameters an older embrec saved that this one no longer has (they changed nothing learned)
RETIRED_PARAMS = {"fold_in_lr"}  # rating-dnn's fold-in was Adam steps; it is Gauss-Newton now


def _portable_params(params: dict[str, Any]) -> dict[str, Any]:
    """A model trained with device="cuda" loads on a machine without CUDA: it runs on the CPU there.
    Retired hyper-parameters of older versions are dropped."""
    if not isinstance(params, dict):
        return params
    params = {k: v for k, v in params.items() if k not in RETIRED_PARAMS}
    device = params.get("device")
    if isinstance(device, str) and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("the model was saved with device=%r; no CUDA device here, so it runs on the CPU", device)
            return {**params, "device": "cpu"}
    return params


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file (created with the umask's permissions) and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(to_plain(data), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(folder: Path, name: str, default: Any = None) -> Any:
    """``folder/name`` parsed as JSON; ``default`` when the file is absent (None: absent is an error)."""
    f = folder / name
    try:
        text = f.read_bytes()
    except FileNotFoundError:
        if default is not None:
            return default
        raise ModelFileError(f"model directory {str(folder)!r} lacks {name}.") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {str(f)!r} ({exc.strerror or exc}).") from None
    return _parse_json(f, text)


def _parse_json(f: Path, text: bytes | None) -> Any:
    try:
        return json.loads(text if text is not None else b"")
    except (ValueError, UnicodeDecodeError) as exc:
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
