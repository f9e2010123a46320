"""Unpacking `.zip` uploads safely: every entry becomes a file to ingest or a rejection.

Nothing is written to the filesystem here: entries are read into memory one at a time, with
every size counted as it is read (the sizes a zip declares can lie). An entry is rejected, with
a reason a person understands, when its path is absolute or climbs out of the archive (`../`),
it is a link, it is encrypted, it is itself an archive (archives are unpacked one level only),
it is larger than UPLOAD_MAX_BYTES, or it expands more than ZIP_MAX_RATIO times (a zip bomb).
Once the archive's entries have unpacked to ZIP_MAX_TOTAL_BYTES, the rest are rejected; an
archive with more than ZIP_MAX_ENTRIES entries is rejected whole.
"""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

ARCHIVE_EXTENSIONS = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz")
SKIPPED_PARTS = {"__MACOSX"}
SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int
    max_total_bytes: int
    max_ratio: float
    max_entry_bytes: int


@dataclass(frozen=True)
class ArchiveEntry:
    """One entry: `data` to ingest, or `error` saying why it was rejected (then data is None)."""

    path: str  # the entry's name inside the archive, as stored
    data: bytes | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return PurePosixPath(self.path.replace("\\", "/")).name or self.path


class ArchiveError(Exception):
    """The archive as a whole cannot be unpacked; the message is shown to people."""


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_EXTENSIONS)


def is_zip(name: str) -> bool:
    """A `.zip` upload to unpack. DOCX and other zip-based formats are not archives here: only
    the `.zip` extension asks for unpacking."""
    return name.lower().endswith(".zip")


def _unsafe_path(path: str) -> str:
    """Why an entry's path is unsafe to honour, or '' when it is fine."""
    normal = path.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        return "its path is absolute"
    if any(part == ".." for part in normal.split("/")):
        return "its path climbs out of the archive (../)"
    if "\x00" in normal:
        return "its name contains a NUL character"
    return ""


def _skipped(path: str) -> bool:
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts:
        return True
    return (
        any(part in SKIPPED_PARTS for part in parts)
        or parts[-1] in SKIPPED_NAMES
        or parts[-1].startswith("._")
    )


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | None:
    """The entry's bytes, or None once more than `cap` bytes come out (sizes are not trusted)."""
    out = io.BytesIO()
    with archive.open(info) as handle:
        while block := handle.read(_READ_BLOCK):
            out.write(block)
            if out.tell() > cap:
                return None
    return out.getvalue()


def zip_entries(data: bytes, limits: ArchiveLimits) -> Iterator[ArchiveEntry]:
    """Every file entry of a zip archive, unpacked or rejected (see the module docstring).

    Raises ArchiveError when the archive itself is unreadable or has too many entries.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveError(
            f"The file is named .zip but it is not a readable zip archive ({exc})."
        ) from exc
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_entries:
        raise ArchiveError(
            f"The archive has {len(files)} entries; the limit is {limits.max_entries} "
            "(ZIP_MAX_ENTRIES). Split it into smaller archives."
        )
    total = 0
    with archive:
        for info in files:
            path = info.filename
            if _skipped(path):
                continue
            reason = _unsafe_path(path)
            mode = info.external_attr >> 16
            if not reason and stat.S_ISLNK(mode):
                reason = "it is a symbolic link"
            if not reason and info.flag_bits & 0x1:
                reason = "it is encrypted (password-protected)"
            if not reason and is_archive_name(path):
                reason = "it is an archive inside the archive; upload that archive on its own"
            if not reason and info.file_size > limits.max_entry_bytes:
                reason = _too_big(info.file_size, limits.max_entry_bytes)
            if not reason and total >= limits.max_total_bytes:
                reason = _total_reached(limits)
            if (
                not reason
                and info.compress_size
                and (info.file_size / info.compress_size > limits.max_ratio)
            ):
                reason = _ratio(info.file_size / info.compress_size, limits)
            if reason:
                yield ArchiveEntry(path=path, error=f"Not unpacked: {reason}.")
                continue
            cap = min(limits.max_entry_bytes, limits.max_total_bytes - total)
            try:
                content = _read_capped(archive, info, cap)
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
                yield ArchiveEntry(path=path, error=f"Not unpacked: the entry is corrupt ({exc}).")
                continue
            except NotImplementedError:
                yield ArchiveEntry(
                    path=path, error="Not unpacked: its compression method is not supported."
                )
                continue
            if content is None:  # the declared size lied
                if cap < limits.max_entry_bytes:
                    total = limits.max_total_bytes
                    why = _total_reached(limits)
                else:
                    why = _too_big(cap + 1, limits.max_entry_bytes)
                yield ArchiveEntry(path=path, error=f"Not unpacked: {why}.")
                continue
            if info.compress_size and len(content) / info.compress_size > limits.max_ratio:
                yield ArchiveEntry(
                    path=path,
                    error=f"Not unpacked: {_ratio(len(content) / info.compress_size, limits)}.",
                )
                continue
            total += len(content)
            yield ArchiveEntry(path=path, data=content)


def _too_big(size: int, limit: int) -> str:
    return f"it unpacks to more than {limit / 1e6:g} MB, the limit for one file (UPLOAD_MAX_BYTES)"


def _total_reached(limits: ArchiveLimits) -> str:
    return (
        f"the archive already unpacked to {limits.max_total_bytes / 1e6:g} MB, "
        "the limit (ZIP_MAX_TOTAL_BYTES)"
    )


def _ratio(ratio: float, limits: ArchiveLimits) -> str:
    return (
        f"it expands {ratio:.0f} times its compressed size, more than the "
        f"{limits.max_ratio:.0f} allowed (ZIP_MAX_RATIO); it looks like a zip bomb"
    )


def archive_limits() -> ArchiveLimits:
    """The limits of the settings (ZIP_MAX_ENTRIES, ZIP_MAX_TOTAL_BYTES, ZIP_MAX_RATIO and
    UPLOAD_MAX_BYTES for each entry)."""
    return ArchiveLimits(
        max_entries=settings.ZIP_MAX_ENTRIES,
        max_total_bytes=settings.ZIP_MAX_TOTAL_BYTES,
        max_ratio=settings.ZIP_MAX_RATIO,
        max_entry_bytes=settings.UPLOAD_MAX_BYTES,
    )


@dataclass(frozen=True)
class UploadEntry:
    """One file of an upload batch, after unpacking: `data` to store, or (data None) the
    `error` that refused it and a `key` that names the refused input in its collection."""

    name: str
    path: str  # where it came from: a file path, or "archive.zip/inner/path"
    data: bytes | None
    error: str = ""
    key: bytes = b""


def upload_entries(
    files: Iterable[tuple[str, bytes, str]], limits: ArchiveLimits | None = None
) -> Iterator[UploadEntry]:
    """The files `(name, data, source_path)` of an upload, each `.zip` among them unpacked
    into its entries (one level). A refused entry, or a whole archive that cannot be read,
    becomes an entry with its reason; the rest of the batch goes on."""
    for name, data, source_path in files:
        if not is_zip(name):
            yield UploadEntry(name=name, path=source_path, data=data)
            continue
        label = source_path or name
        archive_key = hashlib.sha256(data).digest()
        try:
            for entry in zip_entries(data, limits or archive_limits()):
                path = f"{label}/{entry.path}"
                if entry.data is None:
                    key = archive_key + entry.path.encode()
                    yield UploadEntry(entry.name, path, None, entry.error, key)
                else:
                    yield UploadEntry(entry.name, path, entry.data)
        except ArchiveError as exc:
            yield UploadEntry(name, label, None, str(exc), archive_key)
