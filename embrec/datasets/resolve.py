"""Where a named dataset lives, and how it gets there.

Resolution order for a dataset ``NAME`` (a folder per dataset, e.g. ``ml-100k/``):

1. ``data_dir`` given by the caller (``--data-dir``): ``data_dir/NAME/`` (or ``data_dir`` itself when it
   already is the dataset folder);
2. ``$EMBREC_DATA/NAME/``;
3. the user cache ``$EMBREC_CACHE/NAME/`` (default ``~/.cache/embrec/NAME/``).

If none holds the dataset and ``download=True``, the publisher's archive is fetched from its official URL
(or from ``$EMBREC_DOWNLOAD_BASE/<archive name>`` when that is set: a mirror, or a local server in tests),
streamed to a temporary file, unpacked into a temporary folder inside the cache, checked file by file
against the sha256 sums in the spec, and only then renamed into place. Any failure removes the temporary
files: the cache never holds a half-written dataset.

Nothing unverified is installed. Checksums are checked on the *extracted* files (GroupLens publishes only
an MD5 of ``ml-100k.zip``, and per-file sums survive a re-zipped mirror), unless the archive itself has the
spec's ``archive_sha256``, which covers every file in it. An extracted file that neither covers is not
installed (it is named in a warning), so an archive whose dataset files are all unverified (a fake
``online_retail.csv``) is refused. The installed folder gets a manifest, ``.embrec-download.json``, with
the sha256 of every file: such a folder counts only the files of its manifest (a file added to it later is
ignored with a warning, so a loader's preference among formats cannot pick an unverified one), and they
are re-verified when the folder is first used in a process. A folder without a manifest -- one you put in
``--data-dir``, ``$EMBREC_DATA`` or the cache yourself -- holds your own files and is read as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from embrec.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from embrec.data import Interactions

logger = logging.getLogger(__name__)

ENV_DATA = "EMBREC_DATA"
ENV_CACHE = "EMBREC_CACHE"
ENV_DOWNLOAD_BASE = "EMBREC_DOWNLOAD_BASE"
_CHUNK = 1 << 20
MANIFEST = ".embrec-download.json"


class ChecksumMismatchError(DataError):
    """A downloaded file does not have the sha256 the dataset spec expects."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything embrec knows about one named dataset.

    ``required`` files must all be present in a folder for it to count as the dataset; when ``any_of`` is
    non-empty at least one of those must be present too (e.g. the xlsx, a CSV or a Parquet).
    ``checksums`` maps extracted file names to their sha256, verified after a download.
    ``archive_prefix`` is the folder inside the archive that becomes the dataset folder ("" = top level).
    ``archive_sha256`` is the official archive's sha256: when the download has it, every file is covered.
    ``loader`` reads a dataset folder (None: generated, nothing to find).
    """

    name: str
    description: str
    license: str
    loader: Callable[[Path], Interactions] | None = None
    url: str | None = None
    homepage: str = ""
    required: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    checksums: Mapping[str, str] = field(default_factory=dict)
    archive_prefix: str = ""
    manual_hint: str = ""
    archive_sha256: str | None = None

    @property
    def archive_name(self) -> str:
        return self.url.rsplit("/", 1)[-1] if self.url else ""

    def is_present(self, folder: Path) -> bool:
        """The folder holds the dataset's files (only those of its manifest, in a downloaded folder)."""
        if not folder.is_dir():
            return False
        verified = verified_files(folder)

        def has(name: str) -> bool:
            return (folder / name).is_file() and (verified is None or name in verified)

        if not all(has(f) for f in self.required):
            return False
        return not self.any_of or any(has(f) for f in self.any_of)


def verified_files(folder: Path) -> dict[str, str] | None:
    """{file: sha256} of a folder embrec downloaded (its manifest), None for a folder of one's own."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError
        return {str(k): str(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(
            f"the download manifest {path} is damaged; delete the folder {folder} to download the "
            "dataset again."
        ) from None


_CHECKED: set[tuple[str, int]] = set()


def check_installed(folder: Path) -> None:
    """Re-verify a downloaded folder's files against its manifest (once per process and manifest)."""
    verified = verified_files(folder)
    if verified is None:
        return
    key = (str(Path(folder).resolve()), (Path(folder) / MANIFEST).stat().st_mtime_ns)
    if key in _CHECKED:
        return
    for rel, want in verified.items():
        path = Path(folder) / rel
        got = sha256_file(path) if path.is_file() else "missing"
        if got != want:
            raise ChecksumMismatchError(
                f"{rel} in the downloaded dataset folder {folder} changed after it was verified (sha256 must be "
                f"{want}; received {got}); delete the folder to download the dataset again."
            )
    _CHECKED.add(key)


# roots -----------------------------------------------------------------------------------------
def cache_root() -> Path:
    """``$EMBREC_CACHE`` or ``~/.cache/embrec`` (not created here)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "embrec"


def search_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The roots searched, in order: ``data_dir``, ``$EMBREC_DATA``, the cache."""
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    if os.environ.get(ENV_DATA):
        roots.append(Path(os.environ[ENV_DATA]).expanduser())
    roots.append(cache_root())
    return roots


def find(spec: DatasetSpec, data_dir: str | Path | None = None) -> Path | None:
    """The first folder, in resolution order, that holds the dataset; None when none does."""
    if data_dir is not None and spec.is_present(Path(data_dir).expanduser()):
        return Path(data_dir).expanduser()
    for root in search_roots(data_dir):
        if spec.is_present(root / spec.name):
            return root / spec.name
    return None


def locate(spec: DatasetSpec, *, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The dataset's folder, downloading it into the cache when it is nowhere and ``download``."""
    found = find(spec, data_dir)
    if found is not None:
        logger.info("dataset %s found in %s", spec.name, found)
        check_installed(found)
        return found
    if not download or not spec.url:
        searched = ", ".join(str(r / spec.name) for r in search_roots(data_dir))
        raise DatasetNotFoundError(
            f"dataset {spec.name!r} was not found in {searched} and download is off; "
            f"{_manual(spec)}."
        )
    return fetch(spec)


# download --------------------------------------------------------------------------------------
def download_url(spec: DatasetSpec) -> str:
    """The official URL, or ``$EMBREC_DOWNLOAD_BASE/<archive name>`` when that variable is set."""
    base = os.environ.get(ENV_DOWNLOAD_BASE)
    if base:
        return base.rstrip("/") + "/" + spec.archive_name
    return str(spec.url)


def fetch(spec: DatasetSpec, *, timeout: float = 60.0) -> Path:
    """Download, verify and unpack ``spec`` into ``cache_root()/spec.name``; return that folder."""
    root = cache_root()
    target = root / spec.name
    url = download_url(spec)
    root.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s", spec.name, url)
    fd, part_name = tempfile.mkstemp(prefix=f".{spec.name}-", suffix=".part", dir=root)
    part = Path(part_name)
    staging: Path | None = None
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                digest = _copy(resp, out)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise DatasetNotFoundError(
                f"dataset {spec.name!r} is not available locally and downloading {url} failed "
                f"({reason}); {_manual(spec)}."
            ) from None
        logger.info(
            "downloaded %s (%d bytes, sha256 %s)", spec.archive_name, part.stat().st_size, digest
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
        _unpack(part, staging, spec, url)
        _verify(
            staging,
            spec,
            url,
            covered=spec.archive_sha256 is not None and digest == spec.archive_sha256,
            archive_sha256=digest,
        )
        _install(staging, target)
        staging = None
    finally:
        part.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("dataset %s installed in %s", spec.name, target)
    return target


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src, dst) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


def _unpack(archive: Path, dest: Path, spec: DatasetSpec, url: str) -> None:
    """Extract the members under ``spec.archive_prefix`` into ``dest`` (refusing unsafe paths)."""
    prefix = spec.archive_prefix.strip("/")
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or not parts:
                    continue
                if prefix:
                    if parts[0] != prefix or len(parts) < 2:
                        continue
                    parts = parts[1:]
                if any(p in ("..", "") for p in parts) or info.filename.startswith("/"):
                    raise DataError(
                        f"archive {url} holds an unsafe member path {info.filename!r}; refusing it."
                    )
                out = dest.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile:
        raise DataError(
            f"the file downloaded from {url} for dataset {spec.name!r} is not a zip archive; "
            f"{_manual(spec)}."
        ) from None


def _verify(
    folder: Path, spec: DatasetSpec, url: str, *, covered: bool, archive_sha256: str
) -> None:
    """Check every extracted file, drop the ones nothing vouches for, write the manifest."""
    if not spec.is_present(folder):
        _not_the_dataset(folder, spec, url, sorted(p.name for p in folder.iterdir()), [])
    files: dict[str, str] = {}
    unverified: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        got = sha256_file(path)
        expected_sum = spec.checksums.get(rel)
        if expected_sum is not None and got != expected_sum:
            raise ChecksumMismatchError(
                f"sha256 of {spec.name}/{rel} downloaded from {url} must be {expected_sum}; "
                f"received {got}, so the download was discarded and nothing was written to {cache_root()}."
            )
        if expected_sum is None and not covered:
            unverified.append(rel)
            path.unlink()
            continue
        files[rel] = got
    if unverified:
        logger.warning(
            "not installing %s from %s: no checksum covers %s",
            ", ".join(unverified[:5]) + (", ..." if len(unverified) > 5 else ""),
            url,
            "them" if len(unverified) > 1 else "it",
        )
    if not spec.is_present(folder):
        _not_the_dataset(folder, spec, url, sorted(files), unverified)
    manifest = {"dataset": spec.name, "url": url, "archive_sha256": archive_sha256, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def _not_the_dataset(
    folder: Path, spec: DatasetSpec, url: str, received: list[str], unverified: list[str]
) -> None:
    expected = list(spec.required) + ([f"one of {list(spec.any_of)}"] if spec.any_of else [])
    dropped = (
        f" (files no checksum covers are not installed: {', '.join(unverified[:3])})"
        if unverified
        else ""
    )
    raise DataError(
        f"the archive downloaded from {url} does not hold the files of dataset {spec.name!r}; "
        f"expected {expected}, received {received}{dropped}."
    )


def _install(staging: Path, target: Path) -> None:
    """Move the verified files into place (rename the folder, or file by file into an existing one)."""
    if not target.exists():
        os.replace(staging, target)
        return
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            out = target / path.relative_to(staging)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, out)
    shutil.rmtree(staging, ignore_errors=True)


def _manual(spec: DatasetSpec) -> str:
    folder = cache_root() / spec.name
    hint = spec.manual_hint.format(folder=folder, url=spec.url, homepage=spec.homepage)
    return hint or f"put the dataset files in {folder}"
