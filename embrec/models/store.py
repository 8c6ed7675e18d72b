"""Versioned model directories: every save is a new immutable version, published by one atomic pointer switch.

    DIR/
      current              symlink -> .versions/<id>  (a one-line pointer file where symlinks are not allowed)
      .versions/<id>/      one whole save: config.json, manifest.json, weights.safetensors, the JSON files
      .lock                serialises the publish-and-clean step of concurrent savers (readers never lock)

A save writes and fsyncs a temporary ``.versions/<id>.tmp`` outside any lock, then, holding ``.lock``,
renames it to ``.versions/<id>``, replaces ``current`` with ``os.replace`` (atomic), fsyncs the directories
and cleans up. A reader resolves ``current`` once and reads every file from that one version, so it gets one
whole save, old or new; if the version it resolved is deleted under it, it resolves again.

Cleanup rule (run by every save, under the lock, after its switch): keep the version ``current`` names and
the one it replaced (a reader that resolved the pointer just before the switch is still reading it); delete
every other completed version, the temporary versions and pointer files of savers that are no longer
running (same host: their pid is gone; another host: older than an hour), and the files of the pre-version
layout (``DIR/config.json`` ...). See docs/model-directory.md.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embrec.errors import ModelFileError

logger = logging.getLogger(__name__)

POINTER = "current"
VERSIONS = ".versions"
LOCK = ".lock"
#: the writability probe of ``embrec.models.outpath.check_out_path``
PROBE_PREFIX = ".embrec-write-test-"
MANIFEST = "manifest.json"
#: the files of the layout before versioned directories (all directly in DIR/)
LEGACY_FILES = (
    "config.json",
    "users.json",
    "items.json",
    "weights.safetensors",
    "extra.json",
    "metrics.json",
    "history.json",
    "index.json",
)
#: temporary versions of savers on another host are deleted when older than this (seconds)
FOREIGN_TMP_AGE = 3600.0
_VERSION_RE = re.compile(r"^[0-9A-Za-z._-]+$")
#: the name of a version a save made: <utc stamp>-<host>-<pid>-<random>[.tmp]
_SAVED_NAME = re.compile(r"^\d{8}T\d{12}-[0-9A-Za-z]+-\d+-[0-9a-f]+(\.tmp)?$")
HOST = re.sub(r"[^0-9A-Za-z]", "", socket.gethostname())[:32] or "host"


# reading ------------------------------------------------------------------------------------
def pointer_target(path: Path) -> str | None:
    """The version name ``DIR/current`` points to, or None when there is no pointer."""
    ptr = path / POINTER
    try:
        target = os.readlink(ptr)
    except FileNotFoundError:
        return None
    except OSError:  # a pointer file, not a symlink (or not readable as a link)
        try:
            target = ptr.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"cannot read the pointer {str(ptr)!r} ({exc}).") from None
    head, _, name = target.replace("\\", "/").partition("/")
    if head != VERSIONS or not _VERSION_RE.match(name) or name in (".", ".."):
        raise ModelFileError(
            f"the pointer {str(ptr)!r} must name a version in {VERSIONS}/; it names "
            f"{target[:80]!r}, so the model directory is damaged."
        )
    return name


def resolve(path: str | Path) -> Path:
    """The folder that holds the files of the model saved in ``path``: the version ``current`` names, or
    ``path`` itself for a directory written before versioned saves. Raises ModelFileError when there is none."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(
            f"model directory {str(path)[:80]!r} does not exist or is not a directory."
        )
    name = pointer_target(path)
    if name is not None:
        version = path / VERSIONS / name
        if not version.is_dir():
            raise ModelFileError(
                f"model directory {str(path)[:80]!r} points to version {name!r}, which is "
                "missing; the directory is damaged."
            )
        return version
    if (path / "config.json").is_file():
        return path
    if (path / VERSIONS).is_dir():
        raise ModelFileError(
            f"model directory {str(path)[:80]!r} holds no completed save (its first save "
            "was interrupted); save the model again."
        )
    raise ModelFileError(
        f"{str(path)[:80]!r} is not an embrec model directory (it has neither a "
        f"{POINTER!r} pointer nor a config.json)."
    )


def is_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory that an embrec save made: a valid ``current`` pointer into
    ``.versions/``, an interrupted first save (``.versions/`` holding only embrec-named versions), or the
    first layout (a config.json saying ``"format": "embrec-model"``). A folder that merely has a file called
    ``current`` is not one, so a save never replaces a user's file."""
    path = Path(path)
    if not path.is_dir():
        return False
    versions = path / VERSIONS
    if versions.is_dir():
        if os.path.lexists(path / POINTER):
            try:
                name = pointer_target(path)
            except ModelFileError:
                return False
            # not whether that version exists: a concurrent save may be replacing it right now
            return name is not None
        try:
            return all(_SAVED_NAME.match(e) for e in os.listdir(versions))
        except OSError:
            return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    from embrec.models.io import FORMAT

    return isinstance(config, dict) and config.get("format") == FORMAT


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def files_digest(files: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def verify(version: Path) -> dict[str, bytes | None]:
    """Check every file of a version against its manifest. Returns each listed file's name with its bytes
    for the JSON files (parse these, not a second read: the version may be deleted meanwhile) and None for
    the others (weights)."""
    where = version / MANIFEST
    try:
        manifest = json.loads(where.read_bytes())
    except FileNotFoundError:
        raise ModelFileError(
            f"{str(where)!r} is missing; the model directory is damaged."
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{str(where)!r} is not valid JSON ({exc}); the model directory is damaged."
        ) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("digest") != files_digest(files):
        raise ModelFileError(
            f"{str(where)!r} is damaged (its file table does not match its own digest)."
        )
    contents: dict[str, bytes | None] = {}
    for name, entry in files.items():
        f = version / name
        if not _VERSION_RE.match(name) or not isinstance(entry, dict):
            raise ModelFileError(
                f"{str(where)!r} lists an invalid entry {name[:80]!r}; the directory is damaged."
            )
        try:
            if name.endswith(".json"):
                data = contents[name] = f.read_bytes()
                size, sha = len(data), hashlib.sha256(data).hexdigest()
            else:
                contents[name] = None
                size, sha = file_digest(f)
        except FileNotFoundError:
            raise ModelFileError(
                f"{str(f)!r} is missing; the model directory is damaged."
            ) from None
        if size != entry.get("size"):
            raise ModelFileError(
                f"{str(f)!r} is damaged: it holds {size} bytes, the manifest says "
                f"{entry.get('size')}."
            )
        if sha != entry.get("sha256"):
            raise ModelFileError(f"{str(f)!r} is damaged: its sha256 does not match the manifest.")
    return contents


# writing ------------------------------------------------------------------------------------
class VersionWriter:
    """Writes the files of one save into ``DIR/.versions/<id>.tmp`` and publishes them (``publish``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        self.name = f"{stamp}-{HOST}-{os.getpid()}-{secrets.token_hex(3)}"
        self.tmp = path / VERSIONS / f"{self.name}.tmp"
        self.files: dict[str, dict[str, Any]] = {}
        self.created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        if self.created:
            fsync_dir(path.parent)
        (path / VERSIONS).mkdir(exist_ok=True)
        self.tmp.mkdir()

    def write_bytes(self, name: str, data: bytes) -> None:
        with open(self.tmp / name, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def write_json(self, name: str, data: Any) -> None:
        self.write_bytes(name, json.dumps(data, indent=2).encode("utf-8"))

    def add_file(self, name: str) -> None:
        """Record (and fsync) a file written into ``self.tmp`` by other code (e.g. safetensors)."""
        f = self.tmp / name
        os.chmod(f, 0o666 & ~current_umask())  # some writers create 0600 files whatever the umask
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
        size, sha = file_digest(f)
        self.files[name] = {"size": size, "sha256": sha}

    def publish(self) -> Path:
        """Write the manifest, then atomically make this version the directory's current one."""
        from embrec.models.io import FORMAT

        self.write_json(
            MANIFEST, {"format": FORMAT, "files": self.files, "digest": files_digest(self.files)}
        )
        fsync_dir(self.tmp)
        final = self.path / VERSIONS / self.name
        with _locked(self.path / LOCK):
            previous = pointer_target(self.path) if os.path.lexists(self.path / POINTER) else None
            os.replace(self.tmp, final)
            fsync_dir(self.path / VERSIONS)
            _switch_pointer(self.path, f"{VERSIONS}/{self.name}")
            fsync_dir(self.path)
            cleanup(self.path, keep={self.name, previous})
        return final

    def abort(self) -> None:
        """Remove this save's temporary version (and the directory, if this save created it and it is empty)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.created:
            for folder in (self.path / VERSIONS, self.path):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty


def _switch_pointer(path: Path, target: str) -> None:
    tmp = path / f".{POINTER}.tmp-{HOST}-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        os.symlink(target, tmp)
    except (OSError, NotImplementedError):  # no symlinks here (e.g. Windows without the privilege)
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(target + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    try:
        os.replace(tmp, path / POINTER)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cleanup(path: Path, keep: set[str | None]) -> list[str]:
    """Delete what no reader can need any more (the module docstring's rule); returns what was removed."""
    removed = []
    current = pointer_target(path)
    keep = {k for k in keep | {current} if k}
    versions = path / VERSIONS
    for entry in sorted(os.listdir(versions)) if versions.is_dir() else []:
        if entry in keep:
            continue
        if entry.endswith(".tmp") and not _abandoned(entry.removesuffix(".tmp"), versions / entry):
            continue  # a concurrent saver is still writing it
        shutil.rmtree(versions / entry, ignore_errors=True)
        removed.append(f"{VERSIONS}/{entry}")
    for entry in os.listdir(path):
        stale_pointer = entry.startswith(f".{POINTER}.tmp-") and _abandoned(
            entry.split("-", 1)[1], path / entry
        )
        stale_probe = entry.startswith(PROBE_PREFIX) and _abandoned(
            entry[len(PROBE_PREFIX) :], path / entry
        )
        if (
            stale_pointer
            or stale_probe
            or (entry in LEGACY_FILES and current is not None and (path / entry).is_file())
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / entry)
            removed.append(entry)
    if removed:
        logger.debug("removed from %s: %s", path, ", ".join(removed))
    return removed


def _abandoned(name: str, where: Path) -> bool:
    """Whether the saver that named a temporary ``<stamp>-<host>-<pid>-<rand>`` (or ``<host>-<pid>-<rand>``)
    is gone: same host and its process no longer exists, or another host and the entry is over an hour old."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return True
    host, pid = parts[-3], int(parts[-2])
    if host == HOST:
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            return False
        return False
    try:
        return time.time() - where.lstat().st_mtime > FOREIGN_TMP_AGE
    except FileNotFoundError:
        return False


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename inside it survives a crash (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (fcntl.flock; released by the kernel if the holder dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: msvcrt locks the first byte instead
        import msvcrt

        with open(lock_path, "a+b") as fh:
            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
