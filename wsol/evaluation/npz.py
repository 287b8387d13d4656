"""One ``.npz`` archive, opened once and read as ``np.load`` reads it, never further.

``wsol evaluate --npz`` reads score maps one by one from an uncompressed member so that memory stays flat. Doing
that by hand must not change what is read, so :class:`NpzArchive`:

- opens the file once and reads everything through that one handle (a file replaced by name during a run is
  not mixed into it; worker processes that cannot inherit the handle check that the path still names the same
  file);
- resolves a key exactly as ``np.load(...)[key]`` does, and refuses an archive where a key is ambiguous
  (``cams`` beside ``cams.npy``) or a name repeats;
- reads every member through :mod:`zipfile`, which compares the local header's name with the central
  directory's (an entry pointing at another member's header is refused);
- compares each ``.npy`` header's shape x item size with the bytes the member stores before anything that
  grows with the claimed count is allocated, and checks the CRC-32 of a member it streams.

Every refusal is a ``ValueError`` naming the file and the member.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NpyMember", "NpzArchive"]

_READ_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
_CHUNK = 1 << 22  # bytes per read of the CRC pass


class NpyMember:
    """An array stored uncompressed inside an npz, read one item (first axis) at a time.

    ``np.savez`` stores members uncompressed, so item ``i`` lies at a fixed offset: reading it alone keeps the
    process's memory flat however many maps the archive holds. Items are read with ``os.pread`` from the
    archive's one handle (no shared file offset, so forked workers read through it too).

    Attributes:
        shape, dtype, ndim: As the ``.npy`` header states them (checked against the stored bytes).
    """

    def __init__(self, archive: NpzArchive, name: str, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.archive, self.name, self.offset = archive, name, offset
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.ndim = len(self.shape)
        self._item = int(np.prod(self.shape[1:], dtype=object)) * self.dtype.itemsize

    @property
    def path(self) -> Path:
        return self.archive.path

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"index {index} out of range for {self.shape[0]} items")
        data = self.archive.pread(self.offset + index * self._item, self._item)
        if len(data) != self._item:
            raise ValueError(f"{self.path}: item {index} of '{self.name}' is cut short (truncated file?)")
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:])


class NpzArchive:
    """An npz file opened once; members are resolved and read as ``np.load`` would, or refused in one line.

    Args:
        path: The ``.npz`` file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable zip archive, a repeated member name, or an ambiguous key.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"npz file not found: {self.path}")
        self._open()
        self.identity = _identity(os.fstat(self._file.fileno()))

    def _open(self) -> None:
        self._file = open(self.path, "rb")  # noqa: SIM115 - kept open for the archive's lifetime
        try:
            self._zip = zipfile.ZipFile(self._file)
            names = self._zip.namelist()
        except _READ_ERRORS as err:
            self.close()
            raise ValueError(
                f"{self.path}: not a readable npz file (empty or truncated?): {err or 'no data'}"
            ) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            self.close()
            raise ValueError(f"{self.path}: the archive holds {len(repeated)} repeated member name(s): {repeated[0]!r}")
        ambiguous = sorted(n for n in names if not n.endswith(".npy") and f"{n}.npy" in names)
        if ambiguous:
            self.close()
            raise ValueError(
                f"{self.path}: holds both '{ambiguous[0]}' and '{ambiguous[0]}.npy'; which one is meant is ambiguous"
            )
        # np.load's resolution (NpzFile): 'x' names member 'x.npy' unless a member is called 'x' itself.
        self._names = {n.removesuffix(".npy"): n for n in names} | {n: n for n in names}
        self.keys = [n.removesuffix(".npy") for n in names]

    def close(self) -> None:
        """Close the handle (the archive cannot be read afterwards)."""
        self._file.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # A spawned worker reopens the path and checks it is still the same file (see _check_same_file).
        return {"path": self.path, "identity": self.identity}

    def __setstate__(self, state: dict) -> None:
        self.path, self.identity = state["path"], state["identity"]
        self._open()
        if _identity(os.fstat(self._file.fileno())) != self.identity:
            self.close()
            raise ValueError(f"{self.path}: the file changed (replaced or rewritten) while it was being evaluated")

    def __contains__(self, key: str) -> bool:
        return key in self._names

    def pread(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the archive file (no shared file position)."""
        return os.pread(self._file.fileno(), size, offset)

    def _member(self, key: str) -> tuple[zipfile.ZipInfo, Any, tuple[int, ...], bool, np.dtype, int]:
        """The member's info, its open stream positioned after the ``.npy`` header, and the header's fields.

        Raises:
            ValueError: not a ``.npy`` member, a bad header, object dtype, or more data claimed than stored.
        """
        name = self._names[key]
        where = f"{self.path}: '{key}'"
        try:
            info = self._zip.getinfo(name)
            stream = self._zip.open(info)  # compares the local header's name with the directory's
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f".npy format version {version} is not read here (1.0 and 2.0 are)")
            header = stream.tell()
        except KeyError:
            raise
        except _READ_ERRORS as err:
            raise ValueError(f"{where} cannot be read as a .npy array: {err or 'no data'}") from None
        if dtype.hasobject:
            raise ValueError(f"{where} holds Python objects; only numeric arrays are read")
        if any(side < 0 for side in shape):
            raise ValueError(f"{where}: the .npy header claims a negative shape {shape}")
        # Python ints: a header claiming 10**12 maps must not overflow, nor allocate, before this check.
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        stored = info.file_size - header
        if needed > stored:
            raise ValueError(
                f"{where}: the .npy header claims shape {shape} of {dtype} ({needed} bytes), but the member "
                f"stores {max(stored, 0)} bytes after its header"
            )
        return info, stream, shape, fortran, dtype, header

    def load(self, key: str) -> np.ndarray:
        """The whole array ``key`` (what ``np.load(path)[key]`` gives), checked first.

        Raises:
            KeyError: no such member.
            ValueError: see :meth:`_member`, or the data cannot be read.
        """
        if key not in self._names:
            raise KeyError(f"{self.path}: no '{key}' array (keys: {sorted(self.keys)})")
        info, stream, shape, fortran, dtype, _ = self._member(key)
        try:
            with stream:
                stream.seek(0)
                return np.lib.format.read_array(stream, allow_pickle=False)
        except _READ_ERRORS as err:
            raise ValueError(f"{self.path}: '{key}' cannot be read (truncated file?): {err or 'no data'}") from None

    def stored(self, key: str) -> NpyMember | None:
        """``key`` as an :class:`NpyMember` read item by item, or None when it must be loaded whole (compressed,
        Fortran-ordered or 0-d). The member's CRC-32 is checked here, in one pass of flat memory."""
        if key not in self._names:
            return None
        info, stream, shape, fortran, dtype, header = self._member(key)
        stream.close()
        if info.compress_type != zipfile.ZIP_STORED or fortran or len(shape) < 1:
            return None
        where = f"{self.path}: '{key}'"
        local = self.pread(info.header_offset, 30)  # signature ... name length (26), extra length (28)
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
        start += int.from_bytes(local[28:30], "little")
        end = start + info.compress_size
        if info.compress_size != info.file_size or end > os.fstat(self._file.fileno()).st_size:
            raise ValueError(f"{where}: the member's stored size runs past the end of the file (truncated?)")
        crc = 0
        for offset in range(start, end, _CHUNK):
            chunk = self.pread(offset, min(_CHUNK, end - offset))
            if not chunk:
                raise ValueError(f"{where}: the member is cut short (truncated file?)")
            crc = zlib.crc32(chunk, crc)
        if crc != info.CRC:
            raise ValueError(f"{where}: the member's CRC-32 does not match its data (corrupted file)")
        return NpyMember(self, key, start + header, dtype, shape)


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
