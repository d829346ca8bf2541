"""The on-disk caches: decoded, resized images and frozen-backbone features.

Decoding a JPEG costs ~1-3 ms; reading the same image back as raw uint8 costs ~10 us. So the first
pass decodes each image once (EXIF-corrected RGB, resized to the training size plus a crop margin)
and every later epoch, evaluation, sweep run and k-fold run reads it back.

Layout (``viewfinder cache info`` prints it)::

    <cache>/images/<spec>/index.sqlite   key -> (shard, row); shards and their size, last use
    <cache>/images/<spec>/<shard>.u8     fixed-size uint8 records, written once, never changed
    <cache>/features/<key>.npy           one array of frozen-backbone features per (model, data)

``<spec>`` names the preprocessing (stored size, resize rule, version); a key is a hash of the
file's absolute path, size and modification time, so an edited file is decoded again.

Why hand-written: no maintained library offers a multi-process-safe, size-capped, file-keyed store
of decoded images (FFCV and DALI need their own dataset formats and a GPU respectively).
Concurrency: writers take an exclusive ``flock`` per spec folder, readers a shared one while they
look up and open shards. Shards are immutable, and an open shard stays readable even if another
run evicts it (POSIX unlink semantics). Reads use ``os.pread``, not ``mmap``, so cached pixels never
count towards the training process's RSS: the cache never has to fit in RAM.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viewfinder.data.outputs import mark_output_folder
from viewfinder.errors import UserError
from viewfinder.progress import track

SPEC_VERSION = 2  # 2: OpenCV box + bilinear resize (images.resize_array)
GIB = 1024**3


def default_cache_dir() -> Path:
    """``$VIEWFINDER_CACHE_DIR``, else ``$XDG_CACHE_HOME/viewfinder``, else ``~/.cache/...``."""
    if os.environ.get("VIEWFINDER_CACHE_DIR"):
        return Path(os.environ["VIEWFINDER_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "viewfinder"


def file_key(path: str | Path) -> str:
    """Identity of an image file: absolute path, size and mtime (an edited file gets a new key)."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:  # missing: a key that is never stored, so decoding reports the file
        return hashlib.sha1(f"missing\0{resolved}".encode()).hexdigest()
    text = f"{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def stored_size(image_size: int, *, crops: bool = True) -> int:
    """Stored side: the training size plus a 1/7 margin for random crops (224 -> 256); without
    crops (``augment=none|flip``) the training size itself: a second resize from the margin
    copy would only blur what quality and defect labels depend on (noise, blocking, fine blur:
    measured on the demo's quality images, docs/benchmarks.md)."""
    return -(-image_size * 8 // 7) if crops else image_size


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ImageStore:
    """All cached images of one preprocessing spec (a stored size): lookup, fill, eviction."""

    def __init__(self, root: str | Path, size: int, *, max_bytes: int = 20 * GIB) -> None:
        self.root = Path(root)
        self.size = size
        self.max_bytes = max_bytes
        self.dir = self.root / "images" / f"rgb-resize{size}-v{SPEC_VERSION}"
        mark_output_folder(self.root)  # a cache_dir inside the data is never read as a class
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record_bytes = size * size * 3
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, shard, row INT)")
            db.execute("CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY, rows, last_used)")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.dir / "index.sqlite", timeout=120)
        try:
            with db:
                yield db
        finally:
            db.close()

    def locate(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        with self._db() as db:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, shard, row FROM entries WHERE key IN ({marks})", chunk
                )
                found.update({key: (shard, row) for key, shard, row in rows})
        return found

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions of ``keys`` not in the store yet."""
        found = self.locate(keys)
        return [i for i, key in enumerate(keys) if key not in found]

    def fill(
        self,
        keys: Sequence[str],
        arrays: Iterator[tuple[int, np.ndarray | None]],
    ) -> None:
        """Write the ``(position, array)`` pairs ``arrays`` yields as one new shard.

        ``None`` arrays (bad files being skipped) are left out. Called under the writer lock by
        ``ensure_cached``; the shard is written to a temporary name and renamed, then indexed.
        """
        name = uuid.uuid4().hex
        tmp = self.dir / f".{name}.tmp"
        written: list[tuple[str, str, int]] = []
        try:
            with open(tmp, "wb") as handle:
                for position, array in arrays:
                    if array is None:
                        continue
                    if array.shape != (self.size, self.size, 3) or array.dtype != np.uint8:
                        raise ValueError(f"cache record has shape {array.shape}, {array.dtype}")
                    handle.write(np.ascontiguousarray(array).tobytes())
                    written.append((keys[position], name, len(written)))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not written:
            tmp.unlink()
            return
        tmp.rename(self.dir / f"{name}.u8")
        with self._db() as db:
            db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?)", written)
            db.execute("INSERT INTO shards VALUES (?, ?, ?)", (name, len(written), time.time()))

    def evict(self, keep: set[str]) -> None:
        """Drop least-recently-used shards (never those in ``keep``) until within ``max_bytes``.

        Call under the writer lock.
        """
        with self._db() as db:
            shards = db.execute("SELECT name, rows FROM shards ORDER BY last_used").fetchall()
            total = sum(rows for _, rows in shards) * self.record_bytes
            for name, rows in shards:
                if total <= self.max_bytes:
                    break
                if name in keep:
                    continue
                db.execute("DELETE FROM entries WHERE shard = ?", (name,))
                db.execute("DELETE FROM shards WHERE name = ?", (name,))
                (self.dir / f"{name}.u8").unlink(missing_ok=True)
                total -= rows * self.record_bytes

    def lock(self, exclusive: bool) -> contextlib.AbstractContextManager:
        return _flock(self.dir / "lock", exclusive)

    def open(self, keys: Sequence[str]) -> CachedImages:
        """A reader for ``keys`` (each must be stored); marks their shards as recently used."""
        with self.lock(exclusive=False):
            found = self.locate(keys)
            shards = sorted({shard for shard, _ in found.values()})
            reader = CachedImages(self.dir, self.size, shards)
            index = {name: i for i, name in enumerate(shards)}
            where = [(index[found[k][0]], found[k][1]) if k in found else (-1, -1) for k in keys]
            reader.locations = np.asarray(where, dtype=np.int64).reshape(-1, 2)
            reader.open_shards()  # now, under the lock: an open shard survives later eviction
        with self._db() as db:
            db.executemany(
                "UPDATE shards SET last_used = ? WHERE name = ?", [(time.time(), s) for s in shards]
            )
        return reader


class CachedImages:
    """Random access to stored images by position: ``reader[i]`` -> (S, S, 3) uint8 array or None.

    Holds open file descriptors (re-opened after pickling into a spawned worker).
    """

    def __init__(self, folder: Path, size: int, shards: list[str]) -> None:
        self.folder, self.size, self.shards = folder, size, shards
        self.record_bytes = size * size * 3
        self.locations = np.zeros((0, 2), dtype=np.int64)
        self._fds: list[int] = []
        self._pid = -1

    def open_shards(self) -> None:
        """Open every shard (a forked worker inherits the descriptors; pread shares them)."""
        if not self._fds:
            self._fds = [os.open(self.folder / f"{name}.u8", os.O_RDONLY) for name in self.shards]
            self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, position: int) -> np.ndarray | None:
        shard, row = self.locations[position]
        if shard < 0:
            return None
        self.open_shards()
        data = os.pread(self._fds[shard], self.record_bytes, int(row) * self.record_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.size, self.size, 3)

    def read_batch(self, positions: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """The stored images among ``positions`` as one (N, S, S, 3) uint8 array, and which
        positions they are (a file that could not be decoded has no record and is left out).

        One ``preadv`` per image straight into the batch array: no per-image objects, no copy.
        """
        wanted = np.asarray(positions, dtype=np.int64)
        where = self.locations[wanted]
        present = where[:, 0] >= 0
        out = np.empty((int(present.sum()), self.size, self.size, 3), dtype=np.uint8)
        self.open_shards()
        for slot, (shard, row) in enumerate(where[present]):
            got = os.preadv(self._fds[shard], [out[slot]], int(row) * self.record_bytes)
            if got != self.record_bytes:
                path = self.folder / f"{self.shards[shard]}.u8"
                raise UserError(f"{path}: cache shard is truncated; run viewfinder cache clear")
        return out, wanted[present].tolist()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_fds=[], _pid=-1)
        return state

    def __del__(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def ensure_cached(
    store: ImageStore,
    paths: Sequence[Path],
    decode: Callable[[Sequence[Path], list[int]], Iterator[tuple[int, np.ndarray | None]]],
) -> CachedImages:
    """Decode what is missing (once, under the writer lock) and return a reader for ``paths``.

    ``decode(paths, positions)`` yields ``(position, array or None)``; it may use worker processes.
    Two runs sharing the cache: the second waits for the first's fill, then finds it all stored.
    """
    keys = [file_key(p) for p in paths]
    if store.missing(keys):
        with store.lock(exclusive=True):
            todo = store.missing(keys)  # another run may have filled them meanwhile
            if todo:
                decoded = track(decode(paths, todo), len(todo), "decoding images into the cache")
                store.fill(keys, decoded)
                store.evict(keep={shard for shard, _ in store.locate(keys).values()})
    return store.open(keys)


# --- frozen-backbone features ---------------------------------------------------------------------
def feature_path(root: str | Path, key: str) -> Path:
    return Path(root) / "features" / f"{key}.npy"


def load_features(root: str | Path, key: str) -> np.ndarray | None:
    """Cached features for ``key`` (memory-mapped, read-only), or None."""
    path = feature_path(root, key)
    if not path.is_file():
        return None
    os.utime(path)  # last use, for `cache info`
    return np.load(path, mmap_mode="r")


def save_features(root: str | Path, key: str, array: np.ndarray) -> Path:
    """Store features atomically (write to a temporary name, then rename)."""
    path = feature_path(root, key)
    mark_output_folder(Path(root))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.npy")
    np.save(tmp, array)
    tmp.replace(path)
    return path


# --- cache info / clear ---------------------------------------------------------------------------
def _folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def cache_info(root: str | Path) -> list[dict[str, Any]]:
    """One row per store: kind, spec, images or arrays held, bytes on disk."""
    root = Path(root)
    rows: list[dict[str, Any]] = []
    for spec in sorted((root / "images").glob("*")) if (root / "images").is_dir() else []:
        count = 0
        if (spec / "index.sqlite").is_file():
            db = sqlite3.connect(spec / "index.sqlite", timeout=120)
            try:
                count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            finally:
                db.close()
        rows.append({"kind": "images", "name": spec.name, "items": count,
                     "bytes": _folder_bytes(spec)[1]})  # fmt: skip
    files, size = _folder_bytes(root / "features")
    if files:
        rows.append({"kind": "features", "name": "features", "items": files, "bytes": size})
    return rows


def clear_cache(root: str | Path, kind: str = "all") -> int:
    """Delete the image store, the feature store or both; returns bytes freed."""
    root = Path(root)
    freed = 0
    for name in ("images", "features") if kind == "all" else (kind,):
        folder = root / name
        freed += _folder_bytes(folder)[1]
        if folder.is_dir():
            shutil.rmtree(folder)
    return freed
