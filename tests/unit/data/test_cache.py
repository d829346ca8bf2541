"""The decoded-image cache: decode once, read back exactly, share safely, evict, clear."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.helpers import BAD_IMAGE_KEYS, GOOD_IMAGE_KEYS, make_bad_image_corpus
from viewfinder.cli import app
from viewfinder.data import dataset as dataset_module
from viewfinder.data.cache import (
    SPEC_VERSION,
    CachedImages,
    ImageStore,
    cache_info,
    clear_cache,
    default_cache_dir,
    ensure_cached,
    file_key,
    load_features,
    save_features,
    stored_size,
)
from viewfinder.data.dataset import (
    CacheSettings,
    ImageDataset,
    build_image_dataset,
    collate_skipping,
    decode_many,
)
from viewfinder.data.images import decode_resized, load_image, resize_array
from viewfinder.data.sources import ImageRecord
from viewfinder.errors import BadImageError, UserError

SIZE = 8  # stored side in most tests: 192 bytes a record
RECORD = SIZE * SIZE * 3


def _write_pngs(folder: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` small PNGs, each with its own pixels (a ramp offset by its number)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        ramp = (np.arange(12 * 10 * 3).reshape(10, 12, 3) * 7 + i * 37) % 256
        path = folder / f"{i:04d}.png"
        Image.fromarray(ramp.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _records(paths: Sequence[Path]) -> list[ImageRecord]:
    return [ImageRecord(id=p.stem, path=p, label=None) for p in paths]


class CountingDecode:
    """A ``decode`` for ``ensure_cached``: ``decode_many`` in-process, remembering what it did."""

    def __init__(self, size: int = SIZE, skip: bool = True) -> None:
        self.size, self.skip = size, skip
        self.calls = 0
        self.positions: list[int] = []

    def __call__(self, paths: Sequence[Path], todo: list[int]) -> Iterator[Any]:
        self.calls += 1
        for position, array in decode_many(paths, todo, self.size, workers=0, skip=self.skip):
            self.positions.append(position)
            yield position, array


def _read_all(reader: CachedImages) -> list[np.ndarray | None]:
    return [None if (a := reader[i]) is None else a.copy() for i in range(len(reader))]


def _shard_files(store: ImageStore) -> list[Path]:
    return sorted(store.dir.glob("*.u8"))


# --- decode_resized -------------------------------------------------------------------------------
def _write_inputs(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    paths = {name: folder / name for name in ("rgb.jpg", "rgb.png", "grey.jpg", "grey.png")}
    Image.fromarray(rgb).save(paths["rgb.jpg"], quality=95)
    Image.fromarray(rgb).save(paths["rgb.png"])
    Image.fromarray(rgb[..., 0]).save(paths["grey.jpg"], quality=95)
    Image.fromarray(rgb[..., 0]).save(paths["grey.png"])
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], axis=2)
    rgba[:, :20, 3] = 0  # left half transparent -> white
    paths["rgba.png"] = folder / "rgba.png"
    Image.fromarray(rgba).save(paths["rgba.png"])
    return paths


def test_decode_resized_shape_dtype_for_every_kind_of_input(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    corpus = make_bad_image_corpus(tmp_path / "corpus")
    paths.update({key: corpus[key] for key in GOOD_IMAGE_KEYS})
    for name, path in paths.items():
        for size in (8, 37):
            array = decode_resized(path, size)
            assert array.shape == (size, size, 3), name
            assert array.dtype == np.uint8, name
    grey = decode_resized(paths["grey.jpg"], 16)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    rgba = decode_resized(paths["rgba.png"], 16)
    assert (rgba[:, :7] == 255).all()  # transparent half composited onto white


def test_decode_resized_applies_exif_orientation(tmp_path: Path) -> None:
    path = make_bad_image_corpus(tmp_path)["exif_rotated_jpeg"]
    array = decode_resized(path, 16).astype(int)
    # stored top-left red block, shown rotated 90 degrees clockwise: now the top-right corner
    top_right, top_left = array[0, 15], array[0, 0]
    assert top_right[0] > 200 and top_right[1] < 60 and top_right[2] < 60
    assert top_left[0] < 100


def test_decode_resized_equals_full_decode_then_resize_for_small_images(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    for path in paths.values():
        expected = resize_array(np.asarray(load_image(path)), 16, 16)
        np.testing.assert_array_equal(decode_resized(path, 16), expected)


def _smooth(rows: int, cols: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    pixels = np.stack([xx / cols * 255, yy / rows * 255, 128 + 90 * np.sin(xx / 9 + yy / 13)], 2)
    return pixels.round().astype(np.uint8)


@pytest.mark.parametrize("shape", [(300, 420), (150, 160), (90, 200), (60, 50)])
def test_resize_array_matches_an_antialiased_resize_on_smooth_images(shape: tuple) -> None:
    """Shrinking by 2.8x, by ~1.1x, shrinking one axis while growing the other, enlarging."""
    image = _smooth(*shape)
    ours = resize_array(image, 128, 128).astype(np.float64)
    pil = np.asarray(Image.fromarray(image).resize((128, 128), Image.Resampling.BILINEAR))
    assert ours.shape == (128, 128, 3)
    assert np.abs(ours - pil).mean() < 1.5


def test_resize_array_averages_whole_blocks_exactly() -> None:
    blocks = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)  # 32 x 32 of 4 x 4 blocks
    np.testing.assert_array_equal(resize_array(image, 8, 8), blocks)
    assert resize_array(image, 32, 32) is image  # already the size: untouched


def test_large_jpeg_draft_decode_is_close_to_full_decode(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:900, 0:1200].astype(np.float64)
    pixels = np.stack(
        [xx / 1200 * 255, yy / 900 * 255, 128 + 100 * np.sin(xx / 40) * np.cos(yy / 55)], axis=2
    )
    pixels[300:600, 400:800] = (20, 200, 60)  # an object with hard edges
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)

    assert load_image(path, draft=128).size[0] < 1200  # the DCT-domain shortcut was taken
    drafted = decode_resized(path, 128).astype(np.float64)
    full = np.asarray(load_image(path).resize((128, 128), Image.Resampling.BILINEAR))
    assert drafted.shape == (128, 128, 3)
    assert np.abs(drafted - full).mean() < 6


# --- keys, sizes, defaults ------------------------------------------------------------------------
def test_stored_size_adds_a_seventh() -> None:
    assert stored_size(224) == 256
    assert stored_size(7) == 8
    assert stored_size(8) == 10  # rounded up


def test_file_key_changes_with_mtime_and_content(tmp_path: Path) -> None:
    path = _write_pngs(tmp_path, 1)[0]
    key = file_key(path)
    assert key == file_key(tmp_path / "." / path.name)  # the resolved path counts
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_key(path) != key


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIEWFINDER_CACHE_DIR", "/somewhere/vf")
    assert default_cache_dir() == Path("/somewhere/vf")
    monkeypatch.delenv("VIEWFINDER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert default_cache_dir() == Path("/xdg/viewfinder")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "viewfinder"


# --- ensure_cached --------------------------------------------------------------------------------
def test_ensure_cached_decodes_once_and_reads_back_exactly(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 12)
    store = ImageStore(tmp_path / "cache", SIZE)

    first = CountingDecode()
    reader = ensure_cached(store, paths, first)
    assert first.calls == 1 and sorted(first.positions) == list(range(12))
    arrays = _read_all(reader)
    for path, array in zip(paths, arrays, strict=True):
        np.testing.assert_array_equal(array, decode_resized(path, SIZE))

    second = CountingDecode()
    again = ensure_cached(ImageStore(tmp_path / "cache", SIZE), paths, second)
    assert second.calls == 0 and second.positions == []
    for a, b in zip(arrays, _read_all(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(_shard_files(store)) == 1


def test_ensure_cached_decodes_an_edited_file_again(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 5)
    store = ImageStore(tmp_path / "cache", SIZE)
    ensure_cached(store, paths, CountingDecode())

    Image.new("RGB", (12, 10), (10, 250, 90)).save(paths[3])  # new content, size and mtime
    stat = paths[3].stat()
    os.utime(paths[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    decode = CountingDecode()
    reader = ensure_cached(store, paths, decode)
    assert decode.positions == [3]
    np.testing.assert_array_equal(reader[3], np.full((SIZE, SIZE, 3), (10, 250, 90), np.uint8))
    np.testing.assert_array_equal(reader[2], decode_resized(paths[2], SIZE))


def test_reader_arrays_are_read_only_and_positions_follow_the_request(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 6)
    store = ImageStore(tmp_path / "cache", SIZE)
    ensure_cached(store, paths[:3], CountingDecode())
    ensure_cached(store, paths[3:], CountingDecode())  # a second shard
    order = [paths[5], paths[0], paths[3], paths[1]]
    reader = ensure_cached(store, order, CountingDecode())
    assert len(reader) == 4
    for i, path in enumerate(order):
        np.testing.assert_array_equal(reader[i], decode_resized(path, SIZE))
    assert not reader[0].flags.writeable


def test_store_open_handles_more_keys_than_one_sql_chunk(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, 2)
    keys = [f"key{i}" for i in range(1203)]
    arrays = ((i, np.full((2, 2, 3), i % 256, np.uint8)) for i in range(len(keys)))
    store.fill(keys, arrays)
    assert store.missing(keys) == []
    reader = store.open(keys[::-1])
    assert [int(reader[i][0, 0, 0]) for i in (0, 1, 1202)] == [1202 % 256, 1201 % 256, 0]


def test_fill_rejects_a_record_of_the_wrong_shape(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, 4)
    with pytest.raises(ValueError, match="shape"):
        store.fill(["a"], iter([(0, np.zeros((4, 5, 3), np.uint8))]))
    assert store.missing(["a"]) == [0]


def test_fill_of_only_skipped_files_writes_no_shard(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, 4)
    store.fill(["a", "b"], iter([(0, None), (1, None)]))
    assert _shard_files(store) == [] and list(store.dir.glob(".*.tmp")) == []
    assert store.missing(["a", "b"]) == [0, 1]


# --- two processes sharing the cache --------------------------------------------------------------
def _build_in_child(root: str, paths: list[str], barrier: Any, out: str) -> None:
    """Child process: build the dataset on the shared cache, save what it reads and decoded."""
    # decode workers start as in a CLI run on Linux (fork); a spawned child would otherwise
    # spawn them too and pay torch's import again in each
    multiprocessing.set_start_method("fork", force=True)
    records = [ImageRecord(id=Path(p).stem, path=Path(p), label=None) for p in paths]
    barrier.wait(timeout=60)  # both start filling at the same moment
    dataset, report = build_image_dataset(records, SIZE, CacheSettings(root=Path(root), workers=1))
    images = np.stack([dataset[i]["image"].numpy() for i in range(len(dataset))])
    np.save(out + ".npy", images)
    Path(out + ".json").write_text(json.dumps({"decoded": report.decoded}))


def test_two_processes_fill_the_same_cache_once(tmp_path: Path) -> None:
    paths = [str(p) for p in _write_pngs(tmp_path / "img", 100)]
    root = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    outs = [str(tmp_path / f"out{i}") for i in range(2)]
    processes = [
        context.Process(target=_build_in_child, args=(str(root), paths, barrier, out))
        for out in outs
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(timeout=120)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()

    first, second = (np.load(out + ".npy") for out in outs)
    assert first.shape == (100, 3, SIZE, SIZE)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[17].transpose(1, 2, 0), decode_resized(paths[17], SIZE))
    decoded = sorted(json.loads(Path(out + ".json").read_text())["decoded"] for out in outs)
    assert decoded == [0, 100]  # the second waited for the writer lock, then found everything
    assert [row["items"] for row in cache_info(root)] == [100]
    assert len(list((root / "images").rglob("*.u8"))) == 1


# --- eviction -------------------------------------------------------------------------------------
def test_filling_a_second_shard_evicts_the_first_and_open_readers_still_read(
    tmp_path: Path,
) -> None:
    paths = _write_pngs(tmp_path / "img", 20)
    store = ImageStore(tmp_path / "cache", SIZE, max_bytes=15 * RECORD)  # < two 10-image shards
    old = ensure_cached(store, paths[:10], CountingDecode())
    before = _read_all(old)  # the reader has its shard open now
    (old_shard,) = _shard_files(store)

    new = ensure_cached(store, paths[10:], CountingDecode())
    assert not old_shard.exists()
    assert store.missing([file_key(p) for p in paths[:10]]) == list(range(10))
    assert store.missing([file_key(p) for p in paths[10:]]) == []
    assert [row["items"] for row in cache_info(store.root)] == [10]
    for a, b in zip(before, _read_all(old), strict=True):  # unlinked, still readable
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new[0], decode_resized(paths[10], SIZE))


def test_eviction_drops_the_least_recently_used_shard_not_the_oldest(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 30)
    groups = [paths[:10], paths[10:20], paths[20:]]
    store = ImageStore(tmp_path / "cache", SIZE, max_bytes=25 * RECORD)  # two shards fit
    ensure_cached(store, groups[0], CountingDecode())
    ensure_cached(store, groups[1], CountingDecode())
    ensure_cached(store, groups[0], CountingDecode())  # shard 0 used again: now the newest
    ensure_cached(store, groups[2], CountingDecode())
    missing = [len(store.missing([file_key(p) for p in group])) for group in groups]
    assert missing == [0, 10, 0]


def test_a_reader_not_yet_read_survives_eviction(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 20)
    store = ImageStore(tmp_path / "cache", SIZE, max_bytes=15 * RECORD)
    old = ensure_cached(store, paths[:10], CountingDecode())  # opened, nothing read yet
    ensure_cached(store, paths[10:], CountingDecode())  # evicts the shard `old` points into
    np.testing.assert_array_equal(old[0], decode_resized(paths[0], SIZE))


def test_ensure_cached_never_evicts_what_it_is_about_to_return(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 10)
    store = ImageStore(tmp_path / "cache", SIZE, max_bytes=8 * RECORD)
    ensure_cached(store, paths[:5], CountingDecode())
    reader = ensure_cached(store, paths, CountingDecode())  # fills 5..9, evicts 0..4
    assert [i for i in range(10) if reader[i] is None] == []


def test_a_truncated_shard_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 4)
    reader = ensure_cached(ImageStore(tmp_path / "cache", SIZE), paths, CountingDecode())
    shard = reader.folder / f"{reader.shards[0]}.u8"
    os.truncate(shard, 3 * RECORD + 5)  # the last record cut short
    assert reader.read_batch([0, 1, 2])[0].shape == (3, SIZE, SIZE, 3)
    with pytest.raises(UserError, match=f"{shard.name}: cache shard is truncated") as raised:
        reader.read_batch([0, 3])
    assert "\n" not in str(raised.value)


# --- pickling -------------------------------------------------------------------------------------
def test_cached_images_survive_a_pickle_round_trip(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "img", 6)
    reader = ensure_cached(ImageStore(tmp_path / "cache", SIZE), paths, CountingDecode())
    unread = pickle.loads(pickle.dumps(reader))  # before the parent opened anything
    expected = _read_all(reader)
    copy = pickle.loads(pickle.dumps(reader))  # after: descriptors are not carried over
    assert copy._fds == [] and copy._pid == -1
    for got in (_read_all(copy), _read_all(unread)):
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(copy.locations, reader.locations)


# --- the dataset and bad files --------------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return make_bad_image_corpus(tmp_path / "corpus")


def _present_keys() -> list[str]:
    # "missing" has no file to key; see test_build_skips_a_missing_file
    return [k for k in GOOD_IMAGE_KEYS + BAD_IMAGE_KEYS if k != "missing"]


def test_bad_files_are_skipped_as_none(tmp_path: Path, corpus: dict[str, Path]) -> None:
    keys = _present_keys()
    records = _records([corpus[k] for k in keys])
    dataset, report = build_image_dataset(
        records, SIZE, CacheSettings(root=tmp_path / "cache"), on_bad_image="skip"
    )
    assert report.images == len(keys) and report.decoded == len(keys)
    bad = {i for i, k in enumerate(keys) if k in BAD_IMAGE_KEYS}
    for i, key in enumerate(keys):
        if i in bad:
            assert dataset.cache[i] is None, key
            assert dataset[i] is None, key
        else:
            item = dataset[i]
            assert item["image"].shape == (3, SIZE, SIZE) and item["index"] == i
            expected = decode_resized(corpus[key], SIZE).transpose(2, 0, 1)
            np.testing.assert_array_equal(item["image"].numpy(), expected)
    assert [row["items"] for row in cache_info(tmp_path / "cache")] == [len(keys) - len(bad)]

    # the same cache read under the "error" policy: a skipped file is an error now
    strict = ImageDataset(records, SIZE, cache=dataset.cache, on_bad_image="error")
    with pytest.raises(BadImageError):
        strict[keys.index("truncated_jpeg")]
    assert strict[keys.index("rgb_jpeg")] is not None


def test_a_batch_read_equals_the_items_it_replaces(tmp_path: Path, corpus: dict[str, Path]) -> None:
    """``__getitems__`` (what the DataLoader calls) = collating ``dataset[i]`` one by one,
    with skipped files dropped and counted, and channels-last memory the crop reads in place."""
    keys = _present_keys()
    records = _records([corpus[k] for k in keys])
    targets = list(range(100, 100 + len(keys)))
    dataset, _ = build_image_dataset(
        records, SIZE, CacheSettings(root=tmp_path / "cache"), targets=targets, on_bad_image="skip"
    )
    order = list(reversed(range(len(keys))))
    batch = collate_skipping(dataset.__getitems__(order))
    expected = collate_skipping([dataset[i] for i in order])
    assert batch["skipped"] == expected["skipped"] == sum(k in BAD_IMAGE_KEYS for k in keys)
    for name in ("image", "target", "index"):
        assert torch.equal(batch[name], expected[name]), name
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    bad_only = [keys.index("truncated_jpeg")]
    assert collate_skipping(dataset.__getitems__(bad_only)) is None

    strict = ImageDataset(records, SIZE, cache=dataset.cache, on_bad_image="error")
    with pytest.raises(BadImageError, match="not decodable"):
        strict.__getitems__(order)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_skipping)
    seen = [i for b in loader if b is not None for i in b["index"].tolist()]
    assert sorted(seen) == [i for i, k in enumerate(keys) if k not in BAD_IMAGE_KEYS]


def test_a_bad_file_raises_under_the_error_policy(tmp_path: Path, corpus: dict[str, Path]) -> None:
    paths = [corpus["rgb_jpeg"], corpus["truncated_jpeg"], corpus["png16"]]
    with pytest.raises(BadImageError, match="truncated"):
        build_image_dataset(_records(paths), SIZE, CacheSettings(root=tmp_path / "cache"))
    uncached = CacheSettings(enabled=False)
    dataset, _ = build_image_dataset(_records(paths), SIZE, uncached)
    with pytest.raises(BadImageError, match="truncated"):
        dataset[1]
    skipping, _ = build_image_dataset(_records(paths), SIZE, uncached, on_bad_image="skip")
    assert skipping[1] is None and skipping[0] is not None


def test_a_failed_fill_leaves_no_temporary_file(tmp_path: Path, corpus: dict[str, Path]) -> None:
    paths = [corpus["rgb_jpeg"], corpus["truncated_jpeg"]]
    with pytest.raises(BadImageError):
        build_image_dataset(_records(paths), SIZE, CacheSettings(root=tmp_path / "cache"))
    assert list((tmp_path / "cache").rglob("*.tmp")) == []


def test_a_bad_file_raises_bad_image_error_from_decode_workers(
    tmp_path: Path, corpus: dict[str, Path]
) -> None:
    paths = _write_pngs(tmp_path / "img", 70) + [corpus["truncated_jpeg"]]
    settings = CacheSettings(root=tmp_path / "cache", workers=1)
    raised: Exception | None = None
    try:
        build_image_dataset(_records(paths), SIZE, settings)
    except Exception as error:  # noqa: BLE001 - its type is what is being tested
        raised = error
    # drop the frames (and the suspended DataLoader) now: shutting its workers down later, in
    # whichever test the garbage collector happens to run, costs that test seconds
    if raised is not None:
        raised.__traceback__ = None
    gc.collect()
    assert isinstance(raised, BadImageError), f"{type(raised).__name__}: {raised}"


def test_decode_workers_skip_bad_files(tmp_path: Path, corpus: dict[str, Path]) -> None:
    paths = _write_pngs(tmp_path / "img", 70) + [corpus["truncated_jpeg"]]
    settings = CacheSettings(root=tmp_path / "cache", workers=1)
    dataset, report = build_image_dataset(_records(paths), SIZE, settings, on_bad_image="skip")
    assert report.decoded == 71 and dataset[70] is None
    np.testing.assert_array_equal(
        dataset[42]["image"].numpy(), decode_resized(paths[42], SIZE).transpose(2, 0, 1)
    )


def test_build_skips_a_missing_file(tmp_path: Path, corpus: dict[str, Path]) -> None:
    paths = [corpus["rgb_jpeg"], corpus["missing"]]
    settings = CacheSettings(root=tmp_path / "cache")
    dataset, _ = build_image_dataset(_records(paths), SIZE, settings, on_bad_image="skip")
    assert dataset[1] is None


def test_build_counts_decodes_through_decode_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []

    def counting(paths: Sequence[Path], positions: list[int], size: int, **kwargs: Any):
        for position, array in decode_many(paths, positions, size, **kwargs):
            decoded.append(position)
            yield position, array

    monkeypatch.setattr(dataset_module, "decode_many", counting)
    records = _records(_write_pngs(tmp_path / "img", 9))
    settings = CacheSettings(root=tmp_path / "cache")
    first, report = build_image_dataset(records, SIZE, settings, targets=list(range(9)), seed=3)
    assert sorted(decoded) == list(range(9)) and report.decoded == 9
    assert report.folder.startswith(str(tmp_path / "cache")) and report.seconds > 0
    second, report = build_image_dataset(records, SIZE, settings, targets=list(range(9)), seed=3)
    assert len(decoded) == 9 and report.decoded == 0
    for i in range(9):
        a, b = first[i], second[i]
        assert a["target"] == b["target"] == i
        assert torch.equal(a["image"], b["image"])


def test_cache_disabled_decodes_directly_with_the_same_output(tmp_path: Path) -> None:
    records = _records(_write_pngs(tmp_path / "img", 7))
    cached, _ = build_image_dataset(records, SIZE, CacheSettings(root=tmp_path / "cache"))
    direct, report = build_image_dataset(records, SIZE, CacheSettings(enabled=False))
    assert direct.cache is None and report.decoded == 0 and report.folder == ""
    for i in range(7):
        assert torch.equal(cached[i]["image"], direct[i]["image"])
        assert cached[i]["target"] == direct[i]["target"] == -1


def test_dataset_images_are_writable_copies(tmp_path: Path) -> None:
    records = _records(_write_pngs(tmp_path / "img", 2))
    dataset, _ = build_image_dataset(records, SIZE, CacheSettings(root=tmp_path / "cache"))
    image = dataset[0]["image"]
    image.zero_()  # must not touch the cache
    assert bool(dataset[0]["image"].any())


def test_sample_transform_is_seeded_per_sample(tmp_path: Path) -> None:
    records = _records(_write_pngs(tmp_path / "img", 3))
    draw = lambda image: image + torch.randint(0, 5, image.shape, dtype=torch.uint8)  # noqa: E731
    settings = CacheSettings(root=tmp_path / "cache")
    dataset, _ = build_image_dataset(records, SIZE, settings, seed=1, sample_transform=draw)
    again = dataset[2]["image"]
    assert torch.equal(dataset[2]["image"], again)
    dataset.epoch = 1
    assert not torch.equal(dataset[2]["image"], again)


def test_collate_skipping_drops_none_and_counts_it(tmp_path: Path) -> None:
    records = _records(_write_pngs(tmp_path / "img", 3))
    dataset, _ = build_image_dataset(records, SIZE, CacheSettings(root=tmp_path / "cache"))
    batch = collate_skipping([dataset[0], None, dataset[2], None])
    assert batch["image"].shape == (2, 3, SIZE, SIZE) and batch["skipped"] == 2
    assert batch["index"].tolist() == [0, 2]
    assert collate_skipping([None, None]) is None


# --- features, info, clear, CLI -------------------------------------------------------------------
def test_features_round_trip_memory_mapped_read_only(tmp_path: Path) -> None:
    array = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float16)
    assert load_features(tmp_path, "abc") is None
    path = save_features(tmp_path, "abc", array)
    assert path == tmp_path / "features" / "abc.npy"
    loaded = load_features(tmp_path, "abc")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    assert loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded, array)
    save_features(tmp_path, "abc", array * 2)  # replaced atomically
    np.testing.assert_array_equal(load_features(tmp_path, "abc"), array * 2)
    assert [p.name for p in (tmp_path / "features").iterdir()] == ["abc.npy"]


def _filled_cache(root: Path, images: Path) -> None:
    store = ImageStore(root, SIZE)
    ensure_cached(store, _write_pngs(images, 4), CountingDecode())
    save_features(root, "k1", np.zeros((3, 4), np.float32))
    save_features(root, "k2", np.zeros((2, 4), np.float32))


def test_cache_info_and_clear_free_bytes(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    assert cache_info(root) == []
    _filled_cache(root, tmp_path / "img")
    rows = {row["kind"]: row for row in cache_info(root)}
    assert (
        rows["images"]["name"] == f"rgb-resize{SIZE}-v{SPEC_VERSION}"
        and rows["images"]["items"] == 4
    )
    assert rows["images"]["bytes"] >= 4 * RECORD
    assert rows["features"]["items"] == 2 and rows["features"]["bytes"] > 0

    assert clear_cache(root, "images") == rows["images"]["bytes"]
    assert [row["kind"] for row in cache_info(root)] == ["features"]
    assert clear_cache(root, "images") == 0
    assert clear_cache(root) == rows["features"]["bytes"]
    assert cache_info(root) == []


def test_cli_cache_info_and_clear(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    runner = CliRunner()
    empty = runner.invoke(app, ["cache", "info", "--dir", str(root)])
    assert empty.exit_code == 0 and "empty" in empty.output

    _filled_cache(root, tmp_path / "img")
    info = runner.invoke(app, ["cache", "info", "--dir", str(root)])
    assert info.exit_code == 0, info.output
    assert f"rgb-resize{SIZE}-v{SPEC_VERSION}" in info.output and "features" in info.output
    assert str(root) in info.output.replace("\n", "")

    cleared = runner.invoke(app, ["cache", "clear", "images", "--dir", str(root)])
    assert cleared.exit_code == 0, cleared.output
    assert "cleared images" in cleared.output and "MB freed" in cleared.output
    assert not (root / "images").exists() and (root / "features").is_dir()

    wrong = runner.invoke(app, ["cache", "clear", "pixels", "--dir", str(root)])
    assert isinstance(wrong.exception, UserError) and "pixels" in str(wrong.exception)
    assert (root / "features").is_dir()


def test_stored_size_has_no_margin_without_crops() -> None:
    assert stored_size(64, crops=False) == 64  # flips only: no second, blurring resize
