"""Writing output files safely: the one place milan-fhir writes files (``evaluate --out``, the cohort outputs and
work pieces, the export downloads).

Every file is written to a temporary name in its folder (``.NAME.milan-tmp-PID-N``), flushed, ``fsync``-ed
(``durable=True``), given its mode, and renamed over the final name; the folder is ``fsync``-ed after the
rename. Nothing follows a symbolic link: the folder is opened with ``O_NOFOLLOW | O_DIRECTORY`` and refused if it
is a link; files are created relative to it (``dir_fd``) with ``O_EXCL | O_NOFOLLOW``; a link already standing
at the final name is replaced by the file, never written through. Files are private by default (mode ``0600``,
folders ``0700``); ``MILAN_FHIR_FILE_MODE`` / ``MILAN_FHIR_DIR_MODE`` (octal, e.g. ``0640``) change that.
Temporary files left by a killed run are removed by :func:`clean_stale` (when their process is gone).

:func:`safe_name` turns an id into a file name that stays in its folder; :class:`NameClaims` keeps names of one
run distinct (also on case-insensitive file systems), so two inputs never land on one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import stat
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError

__all__ = [
    "FILE_MODE",
    "DIR_MODE",
    "file_mode",
    "dir_mode",
    "ensure_dir",
    "atomic_open",
    "write_bytes",
    "clean_stale",
    "safe_name",
    "NameClaims",
    "TMP_MARK",
]

FILE_MODE = 0o600
DIR_MODE = 0o700
TMP_MARK = ".milan-tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_counter = itertools.count()
_TMP = re.compile(r"^\..+\.milan-tmp-(\d+)-\d+$")


def _mode_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw, 8)
    except ValueError:
        raise OutputError(f"{name}={raw!r} is not an octal file mode such as 0600") from None
    if not 0 <= value <= 0o777:
        raise OutputError(f"{name}={raw!r} is not a file mode between 000 and 777")
    return value


def file_mode() -> int:
    return _mode_from_env("MILAN_FHIR_FILE_MODE", FILE_MODE)


def dir_mode() -> int:
    return _mode_from_env("MILAN_FHIR_DIR_MODE", DIR_MODE)


def _fail(exc: OSError, path: Path | str, what: str = "cannot write") -> OutputError:
    return OutputError(f"{what}: {exc.strerror or exc}", file=str(path))


def ensure_dir(path: str | os.PathLike[str], *, mode: int | None = None) -> Path:
    """Create ``path`` (and its parents) if needed; refuse a symbolic link or a non-folder at ``path``."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        missing = [p]
        while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
            missing.append(missing[-1].parent)
        for folder in reversed(missing):  # every folder we create gets the private mode, parents included
            try:
                folder.mkdir(mode=dir_mode() if mode is None else mode)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _fail(exc, folder, "cannot create the folder") from None
        st = os.lstat(p)
    except OSError as exc:
        raise _fail(exc, p, "cannot use the folder") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError("is a symbolic link; give the real folder (outputs never follow links)", file=str(p))
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError("exists and is not a folder", file=str(p))
    return p


@contextlib.contextmanager
def _dir_fd(folder: Path) -> Iterator[int]:
    try:
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        raise _fail(exc, folder, "cannot open the folder (a symbolic link?)") from None
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], *, durable: bool = True, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` only when the ``with`` block ends without an error (temporary name,
    fsync, mode, rename); on an error the temporary file is removed and ``path`` is left as it was."""
    target = Path(path)
    folder, name = target.parent, target.name
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise OutputError("not a file name", file=str(target))
    tmp = f".{name}{TMP_MARK}{os.getpid()}-{next(_counter)}"
    with _dir_fd(folder) as dfd:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise _fail(exc, folder / tmp) from None
        done = False
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fchmod(fh.fileno(), file_mode() if mode is None else mode)
                if durable:
                    os.fsync(fh.fileno())
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise OutputError("a folder stands where the output file goes", file=str(target))
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link at `name`, never follows it
            done = True
            if durable:
                with contextlib.suppress(OSError):
                    os.fsync(dfd)
        except OSError as exc:
            raise _fail(exc, target) from None
        finally:
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, durable=durable, mode=mode) as fh:
        fh.write(data)
    return Path(path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files a killed run left in ``folder`` (those whose process is gone); return how many."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    with _dir_fd(Path(folder)) as dfd:
        for n in names:
            m = _TMP.match(n)
            if m and not _alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(n, dir_fd=dfd)
                    removed += 1
    return removed


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str, *, limit: int = 100) -> str:
    """A file-name stem for ``text`` that stays in its folder: letters, digits, ``.``, ``_``, ``-`` only, never
    starting with a dot; when anything had to change (or it is too long), a hash of the original is appended so
    that two different texts never share a name."""
    stem = _UNSAFE.sub("_", text)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    if stem != text or len(stem) > limit or not stem:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        stem = f"{stem[:limit]}-{digest}"
    return stem


class NameClaims:
    """File names handed out in one folder during one run: a second claim of a name (compared case-insensitively,
    for macOS and Windows file systems) gets a suffix from a hash of its key instead of overwriting the first."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self._taken: set[str] = {r.casefold() for r in reserved}

    def claim(self, stem: str, suffix: str, key: str) -> str:
        name = f"{stem}{suffix}"
        n = 0
        while name.casefold() in self._taken:
            n += 1
            digest = hashlib.sha256(f"{key}|{n}".encode("utf-8", "surrogatepass")).hexdigest()[:10]
            name = f"{stem}-{digest}{suffix}"
        self._taken.add(name.casefold())
        return name
