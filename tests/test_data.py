"""Tests for gaeanas.data: loaders, subsets, augmentation and the device loader, on tiny made-up data."""
from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import struct
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gaeanas import data, memory
from gaeanas.data import folders
from gaeanas.data import (DeviceLoader, ImageDataset, RemoteDataset, augment_batch, channel_stats,
                          load_dataset, normalize, seeded_subset, split_in_two)
from gaeanas.errors import DataError, ResourceError

from synth import make_image_folder

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the default cache dir inside the test's tmp_path."""
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "default-cache"))


# --------------------------------------------------------------------------- helpers


def _rng_image(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _smooth_image(h: int = 6, w: int = 5) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([40 + 10 * yy, 100 + 10 * xx, np.full_like(yy, 180)], axis=2).astype(np.uint8)


def _write_class_folder(root: Path, h: int = 6, w: int = 5) -> dict[str, np.ndarray]:
    """Classes 'b_cat' (2 PNG) and 'a_dog' (1 JPEG, 1 grayscale PNG); returns exact PNG pixels."""
    exact = {}
    (root / "b_cat").mkdir(parents=True)
    (root / "a_dog").mkdir(parents=True)
    for i in range(2):
        arr = _rng_image(i, h, w)
        Image.fromarray(arr).save(root / "b_cat" / f"{i}.png")
        exact[f"b_cat/{i}.png"] = arr
    Image.fromarray(_smooth_image(h, w)).save(root / "a_dog" / "x.JPG", quality=95)
    gray = np.arange(h * w, dtype=np.uint8).reshape(h, w) * 3
    Image.fromarray(gray, mode="L").save(root / "a_dog" / "y.png")
    exact["a_dog/y.png"] = np.repeat(gray[:, :, None], 3, axis=2)
    (root / "a_dog" / "notes.txt").write_text("not an image")
    return exact


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _py2_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the official release (byte strings, numpy.core names)."""
    def short(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b
    shape = b"K" + bytes([rows.shape[0]]) + b"M" + struct.pack("<H", rows.shape[1]) + b"\x86"
    dtype = (b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R(K\x03" + short(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    raw = rows.tobytes()
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b") + b"\x87R"
             + b"(K\x01" + shape + dtype + b"I00\nT" + struct.pack("<i", len(raw)) + raw + b"tb")
    items = b"".join(b"K" + bytes([v]) for v in labels)
    return b"\x80\x02}(" + short(b"data") + array + short(b"labels") + b"](" + items + b"eu."


def _write_cifar10(folder: Path, n: int = 3, skip: str | None = None) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rows = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        rows[name] = _cifar_rows(n, k)
        if name != skip:
            _dump({b"batch_label": b"x", b"data": rows[name], b"labels": [(k + j) % 10 for j in range(n)],
                   b"filenames": [b"f"] * n}, folder / name)
    _dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, folder / "batches.meta")
    return rows


def _write_cifar100(folder: Path, n: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rows = {}
    for k, name in enumerate(["train", "test"]):
        rows[name] = _cifar_rows(n, 10 + k)
        _dump({b"data": rows[name], b"fine_labels": [99 - j for j in range(n)],
               b"coarse_labels": [0] * n}, folder / name)
    _dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
           b"coarse_label_names": [b"c"] * 20}, folder / "meta")
    return rows


def _tiny_ds(n: int = 10, h: int = 5, w: int = 6, device: str = "cpu") -> ImageDataset:
    g = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return ImageDataset(images, labels, ["a", "b", "c"], "tiny").to(device)


# --------------------------------------------------------------------------- image folders


def test_image_folder_round_trip(tmp_path: Path) -> None:
    exact = _write_class_folder(tmp_path / "imgs")
    ds = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert ds.classes == ["a_dog", "b_cat"]
    assert ds.images.shape == (4, 3, 6, 5) and ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.image_size == (6, 5) and len(ds) == 4
    # files sorted within a class: a_dog/x.JPG, a_dog/y.png, b_cat/0.png, b_cat/1.png
    assert torch.equal(ds.images[1], torch.from_numpy(exact["a_dog/y.png"]).permute(2, 0, 1))
    assert torch.equal(ds.images[2], torch.from_numpy(exact["b_cat/0.png"]).permute(2, 0, 1))
    assert torch.equal(ds.images[3], torch.from_numpy(exact["b_cat/1.png"]).permute(2, 0, 1))
    with Image.open(tmp_path / "imgs" / "a_dog" / "x.JPG") as img:
        assert torch.equal(ds.images[0], torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
    jpeg_err = (ds.images[0].int() - torch.from_numpy(_smooth_image()).permute(2, 0, 1).int()).abs().max()
    assert jpeg_err < 12  # lossy, but the same picture


def test_image_folder_modes_converted_to_rgb(tmp_path: Path) -> None:
    root = tmp_path / "modes" / "only"
    root.mkdir(parents=True)
    rgba = np.dstack([_rng_image(1), np.full((6, 5), 200, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(root / "a.png")
    Image.fromarray(_rng_image(2)).convert("P").save(root / "b.png")
    ds = load_dataset(tmp_path / "modes", cache_dir=tmp_path / "cache")
    assert ds.images.shape == (2, 3, 6, 5)
    assert torch.equal(ds.images[0], torch.from_numpy(rgba[:, :, :3]).permute(2, 0, 1))


def test_train_test_layout_picks_split(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("test", 1)):
        for i in range(count):
            d = tmp_path / "set" / split / ("x" if i % 2 == 0 else "y")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rng_image(i)).save(d / f"{i}.png")
    train = load_dataset(str(tmp_path / "set"), split="train", cache_dir=tmp_path / "c")
    test = load_dataset(str(tmp_path / "set"), split="test", cache_dir=tmp_path / "c")
    assert len(train) == 3 and train.classes == ["x", "y"]
    assert len(test) == 1 and test.classes == ["x"]
    assert train.name.endswith("train") and test.name.endswith("test")


def test_class_root_ignores_split(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    assert len(load_dataset(str(tmp_path / "imgs"), split="test", cache_dir=tmp_path / "c")) == 4


def test_resize_makes_mixed_sizes_load(tmp_path: Path) -> None:
    d = tmp_path / "mixed" / "k"
    d.mkdir(parents=True)
    Image.fromarray(_rng_image(0, 6, 5)).save(d / "a.png")
    Image.fromarray(_rng_image(1, 9, 11)).save(d / "b.png")
    with pytest.raises(DataError, match=r"b\.png.*11x9.*a\.png.*5x6.*--resize"):
        load_dataset(str(tmp_path / "mixed"), cache_dir=tmp_path / "c")
    ds = load_dataset(str(tmp_path / "mixed"), resize=4, cache_dir=tmp_path / "c")
    assert ds.images.shape == (2, 3, 4, 4)


def test_folder_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_class_folder(tmp_path / "imgs")
    first = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache" / "folders").glob("*.pt"))
    assert len(cached) == 1 and not list((tmp_path / "cache" / "folders").glob("*.tmp"))

    def boom(*_: object) -> None:
        raise AssertionError("decoded despite the cache")

    monkeypatch.setattr(folders, "_decode_images", boom)  # where _load_image_folder looks it up
    with pytest.raises(AssertionError, match="decoded despite"):  # the patch is live: an empty cache decodes
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "other-cache")
    again = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert again.classes == first.classes
    monkeypatch.undo()
    monkeypatch.setenv("GAEANAS_CACHE", str(tmp_path / "default-cache"))
    Image.fromarray(_rng_image(5, 6, 5)).save(tmp_path / "imgs" / "b_cat" / "2.png")
    assert len(load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")) == 5
    assert len(load_dataset(str(tmp_path / "imgs"), resize=3, cache_dir=tmp_path / "cache")) == 5
    assert len(list((tmp_path / "cache" / "folders").glob("*.pt"))) == 3


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    first = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache" / "folders").glob("*.pt")
    cache_file.write_bytes(b"not a torch file")
    again = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, again.images)
    assert cache_file.read_bytes() != b"not a torch file"


def test_default_cache_dir_from_env(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    load_dataset(str(tmp_path / "imgs"))
    assert len(list((tmp_path / "default-cache" / "folders").glob("*.pt"))) == 1


def _load_uncached(root: Path, tmp_path: Path, **kwargs: object) -> ImageDataset:
    """A fresh decode, through a cache folder no other call uses."""
    fresh = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}"
    return load_dataset(str(root), cache_dir=fresh, **kwargs)


def _assert_same(a: ImageDataset, b: ImageDataset) -> None:
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise AssertionError("decoded despite the cache")

    monkeypatch.setattr(folders, "_decode_images", boom)


def test_cache_misses_when_a_class_folder_is_renamed(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    assert load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache").classes == ["a_dog", "b_cat"]
    os.rename(tmp_path / "imgs" / "b_cat", tmp_path / "imgs" / "c_cat")  # sizes and mtimes unchanged
    renamed = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert renamed.classes == ["a_dog", "c_cat"]
    _assert_same(renamed, _load_uncached(tmp_path / "imgs", tmp_path))


def test_cache_misses_when_images_move_between_classes(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    before = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert before.labels.tolist() == [0, 0, 1, 1]
    for name in ("0.png", "1.png"):  # same file count, bytes and newest mtime as before
        os.rename(tmp_path / "imgs" / "b_cat" / name, tmp_path / "imgs" / "a_dog" / name)
    after = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert after.classes == ["a_dog", "b_cat"] and after.labels.tolist() == [0, 0, 0, 0]
    _assert_same(after, _load_uncached(tmp_path / "imgs", tmp_path))


def test_cache_misses_on_new_class_resize_or_rewritten_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "imgs"
    _write_class_folder(root)
    load_dataset(str(root), cache_dir=tmp_path / "cache")
    (root / "0_empty").mkdir()  # an empty class shifts every label
    shifted = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert shifted.classes == ["0_empty", "a_dog", "b_cat"] and shifted.labels.tolist() == [1, 1, 2, 2]
    assert load_dataset(str(root), resize=3, cache_dir=tmp_path / "cache").image_size == (3, 3)
    target = root / "b_cat" / "0.png"
    stat = target.stat()
    Image.fromarray(_rng_image(99)).save(target)  # new pixels; same size on disk is not needed to miss
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    rewritten = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert torch.equal(rewritten.images[2], torch.from_numpy(_rng_image(99)).permute(2, 0, 1))
    assert len(list((tmp_path / "cache" / "folders").glob("*.pt"))) == 4
    _no_decoding(monkeypatch)  # and the last one is now a hit
    _assert_same(load_dataset(str(root), cache_dir=tmp_path / "cache"), rewritten)


def _cache_file(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "cache" / "folders").glob("*.pt")
    return found


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong shape", "bad checksum", "wrong labels"])
def test_damaged_cache_is_detected_logged_and_rebuilt(tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "imgs"
    _write_class_folder(root)
    load_dataset(str(root), cache_dir=tmp_path / "cache")
    cache_file = _cache_file(tmp_path)
    if damage == "truncate":
        cache_file.write_bytes(cache_file.read_bytes()[:300])
    elif damage == "garbage":
        cache_file.write_bytes(os.urandom(2000))
    else:
        record = torch.load(cache_file, weights_only=True)
        if damage == "wrong shape":
            record["images"] = record["images"][:, :, :4]
        elif damage == "bad checksum":
            record["images"][0, 0, 0, 0] ^= 1
        else:
            record["labels"] = torch.zeros_like(record["labels"])
        torch.save(record, cache_file)
    with caplog.at_level("WARNING", logger="gaeanas.data.folders"):
        rebuilt = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert "ignoring damaged dataset cache" in caplog.text and cache_file.name in caplog.text
    _assert_same(rebuilt, _load_uncached(root, tmp_path))
    _no_decoding(monkeypatch)  # the rebuilt file is whole again
    _assert_same(load_dataset(str(root), cache_dir=tmp_path / "cache"), rebuilt)


# --------------------------------------------------------------------------- scanning edge cases


@pytest.mark.parametrize("target", ["..", ".", "../.."])
def test_symlink_loop_is_a_one_line_error_naming_the_link(tmp_path: Path, target: str) -> None:
    root = tmp_path / "data" / "imgs"
    _write_class_folder(root)
    os.symlink(target, root / "b_cat" / "loop")
    with pytest.raises(DataError) as err:
        load_dataset(str(root), cache_dir=tmp_path / "c")
    message = str(err.value)
    assert message.startswith(f"symlink loop in image folder: {root / 'b_cat' / 'loop'} leads back to ")
    assert "\n" not in message


def test_symlink_loop_between_class_folders_and_at_the_root(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_class_folder(root)
    os.symlink("../b_cat", root / "a_dog" / "cats")
    os.symlink("../a_dog", root / "b_cat" / "dogs")
    with pytest.raises(DataError, match=r"symlink loop in image folder: .*imgs/a_dog/cats/dogs leads back to"):
        load_dataset(str(root), cache_dir=tmp_path / "c")
    other = tmp_path / "other"
    _write_class_folder(other)
    os.symlink(".", other / "loop")
    with pytest.raises(DataError, match=r"symlink loop in image folder: .*other/loop leads back to"):
        load_dataset(str(other), cache_dir=tmp_path / "c")


def test_self_referencing_link_is_named(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_class_folder(root)
    os.symlink("self.png", root / "b_cat" / "self.png")
    with pytest.raises(DataError, match=r"cannot read .*b_cat/self\.png: Too many levels of symbolic links$"):
        load_dataset(str(root), cache_dir=tmp_path / "c")


def test_symlinked_class_folders_and_images_load(tmp_path: Path) -> None:
    real = tmp_path / "real"
    exact = _write_class_folder(real)
    root = tmp_path / "links"
    root.mkdir()
    os.symlink(real / "a_dog", root / "a_dog")  # a class folder that is a link
    (root / "b_cat").mkdir()
    for name in ("0.png", "1.png"):  # image files that are links
        os.symlink(real / "b_cat" / name, root / "b_cat" / name)
    linked = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert linked.classes == ["a_dog", "b_cat"] and linked.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(linked.images[3], torch.from_numpy(exact["b_cat/1.png"]).permute(2, 0, 1))
    _assert_same(linked, _load_uncached(real, tmp_path))
    Image.fromarray(_rng_image(7)).save(real / "b_cat" / "1.png")  # a link's target changes: a miss
    os.utime(real / "b_cat" / "1.png", ns=(1, 2_000_000_000_000_000_000))
    assert torch.equal(load_dataset(str(root), cache_dir=tmp_path / "c").images[3],
                       torch.from_numpy(_rng_image(7)).permute(2, 0, 1))


def _save_mode(mode: str, path: Path) -> np.ndarray:
    """Save a 6x5 image in Pillow mode `mode` ("P+alpha": palette with a transparent entry); returns the RGB
    pixels Pillow decodes the saved file to."""
    if mode == "I;16":
        Image.fromarray(np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000).save(path)
    elif mode == "P+alpha":
        Image.fromarray(_rng_image(3)).convert("P").save(path, transparency=0)
    else:
        Image.fromarray(_rng_image(3)).convert(mode).save(path)
    with Image.open(path) as back:
        assert back.mode == {"P+alpha": "P", "I;16": back.mode}.get(mode, mode)
        return np.array(back.convert("RGB"))


@pytest.mark.parametrize("mode, ext", [("L", "png"), ("LA", "png"), ("RGBA", "png"), ("P", "png"),
                                       ("P+alpha", "png"), ("1", "png"), ("I;16", "png"), ("CMYK", "jpg"),
                                       ("L", "jpg")])
def test_image_modes_load_as_rgb(tmp_path: Path, mode: str, ext: str) -> None:
    folder = tmp_path / "imgs" / "k"
    folder.mkdir(parents=True)
    expected = _save_mode(mode, folder / f"a.{ext}")
    Image.fromarray(_rng_image(4)).save(folder / "b.png")
    ds = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")
    assert ds.images.shape == (2, 3, 6, 5)
    assert torch.equal(ds.images[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_unicode_and_undecodable_names_load(tmp_path: Path) -> None:
    root = tmp_path / "données"
    for i, cls in enumerate(["猫", "café", "🐶"]):
        (root / cls).mkdir(parents=True)
        Image.fromarray(_rng_image(i)).save(root / cls / f"é{i}✓.png")
    raw_name = os.fsencode(root / "café") + b"/\xff\xfe.png"  # not UTF-8: a surrogate-escaped str
    Image.fromarray(_rng_image(9)).save(os.fsdecode(raw_name))
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert ds.classes == sorted(["猫", "café", "🐶"]) and len(ds) == 4
    assert ds.labels.tolist() == [0, 0, 1, 2]  # café (2 files), 🐶, 猫
    _assert_same(load_dataset(str(root), cache_dir=tmp_path / "c"), ds)  # through the cache


@pytest.mark.parametrize("content", [b"garbage, not a JPEG at all", b"\xff\xd8\xff\xe0" + bytes(40)])
def test_garbage_with_jpeg_extension_is_named(tmp_path: Path, content: bytes) -> None:
    _write_class_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "b_cat" / "zz.jpg").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")
    assert str(err.value).startswith(f"cannot read image {tmp_path / 'imgs' / 'b_cat' / 'zz.jpg'}: ")
    assert "\n" not in str(err.value)


def test_unreadable_first_image_is_named_before_decoding(tmp_path: Path) -> None:
    d = tmp_path / "imgs" / "k"
    d.mkdir(parents=True)
    (d / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*k/a\.png: UnidentifiedImageError"):
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------- memory


def test_huge_resize_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image_folder(tmp_path / "imgs", classes=2, per_class=2, size=4)
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", str(4 * 2**30))

    def boom(*_: object) -> None:
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(folders, "_decode_images", boom)
    monkeypatch.setattr(folders, "_decode_one", boom)
    start = time.perf_counter()
    with pytest.raises(ResourceError) as err:
        load_dataset(str(tmp_path / "imgs"), resize=100_000, cache_dir=tmp_path / "c")
    assert time.perf_counter() - start < 2.0
    assert str(err.value) == (f"decoding 4 images at 100000x100000 from {tmp_path / 'imgs'} needs about 223.5 GiB, "
                              "but only 4.0 GiB is available; use --resize N with a smaller N")


def test_huge_resize_is_refused_without_an_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured free memory of this machine (or an unknown one) never holds 4 images at 10^6 x 10^6."""
    make_image_folder(tmp_path / "imgs", classes=2, per_class=2, size=4)
    monkeypatch.delenv("GAEANAS_MEMORY_LIMIT", raising=False)
    if memory.available_memory("cpu") is None:
        pytest.skip("free memory is unknown here")
    with pytest.raises(ResourceError, match=r"decoding 4 images at 1000000x1000000 .* needs about 21\.8 TiB"):
        load_dataset(str(tmp_path / "imgs"), resize=1_000_000, cache_dir=tmp_path / "c")


def test_decode_memory_estimate_is_two_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_class_folder(tmp_path / "imgs")  # 4 images of 6x5: 360 bytes, 720 while decoding
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", "719")
    with pytest.raises(ResourceError, match=r"decoding 4 images at 5x6 from .*needs about 720 B, but only 719 B is "
                                            r"available; use --resize N to decode the images at N x N pixels"):
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", "720")
    assert load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c").images.shape == (4, 3, 6, 5)


def test_normal_load_under_a_generous_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", str(2**30))
    exact = _write_class_folder(tmp_path / "imgs")
    ds = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")
    assert torch.equal(ds.images[3], torch.from_numpy(exact["b_cat/1.png"]).permute(2, 0, 1))
    assert load_dataset(str(tmp_path / "imgs"), resize=16, cache_dir=tmp_path / "c").image_size == (16, 16)


def test_out_of_memory_while_decoding_is_not_blamed_on_the_image(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _write_class_folder(tmp_path / "imgs")

    def no_memory(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(Image.Image, "resize", no_memory)
    with pytest.raises(ResourceError) as err:
        load_dataset(str(tmp_path / "imgs"), resize=4, cache_dir=tmp_path / "c")
    assert str(err.value) == (f"ran out of memory decoding image {tmp_path / 'imgs' / 'a_dog' / 'x.JPG'} at 4x4; "
                              "use --resize N with a smaller N")


def test_digits_huge_resize_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn")
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", str(8 * 2**30))
    with pytest.raises(ResourceError) as err:
        load_dataset("digits", resize=100_000)
    assert str(err.value) == ("resizing 1,500 images of digits to 100000x100000 needs about 41.1 TiB, but only "
                              "8.0 GiB is available; use --resize N with a smaller N")


def test_cifar_resize_memory_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_cifar10(tmp_path / "cifar-10-batches-py", n=3)
    monkeypatch.setenv("GAEANAS_MEMORY_LIMIT", str(2**20))
    with pytest.raises(ResourceError, match=r"resizing 3 images of .*cifar-10-batches-py to 1000x1000 needs"):
        load_dataset(str(tmp_path / "cifar-10-batches-py"), "test", resize=1000)
    assert load_dataset(str(tmp_path / "cifar-10-batches-py"), "test", resize=16).image_size == (16, 16)


def test_resize_in_small_chunks_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    from gaeanas.data import datasets

    ds = _tiny_ds(9, h=7, w=5)
    whole = datasets._resize_dataset(ds, 12, "tiny")
    monkeypatch.setattr(datasets, "_RESIZE_BLOCK_BYTES", 2 * 4 * 3 * 12 * 12)  # two images per chunk
    assert torch.equal(datasets._resize_dataset(ds, 12, "tiny").images, whole.images)


# --------------------------------------------------------------------------- errors


def test_unknown_name_or_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar10.*cifar100.*digits"):
        load_dataset("imagenet-9000")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(str(missing))


def test_bad_split_and_resize() -> None:
    with pytest.raises(DataError, match="valid"):
        load_dataset("digits", split="valid")
    with pytest.raises(DataError, match="resize"):
        load_dataset("digits", resize=0)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty.*\.jpg.*\.png"):
        load_dataset(str(tmp_path / "empty"), cache_dir=tmp_path / "c")


def test_corrupt_image_named(tmp_path: Path) -> None:
    _write_class_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "b_cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")


def test_truncated_jpeg_named(tmp_path: Path) -> None:
    d = tmp_path / "imgs" / "k"
    d.mkdir(parents=True)
    Image.fromarray(_rng_image(0, 32, 32)).save(d / "a.jpg")
    (d / "cut.jpg").write_bytes((d / "a.jpg").read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "c")


def test_split_layout_missing_split(tmp_path: Path) -> None:
    d = tmp_path / "set" / "train" / "k"
    d.mkdir(parents=True)
    Image.fromarray(_rng_image(0)).save(d / "a.png")
    with pytest.raises(DataError, match=r"test"):
        load_dataset(str(tmp_path / "set"), split="test", cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------- CIFAR releases


def test_cifar10_release_folder(tmp_path: Path) -> None:
    rows = _write_cifar10(tmp_path / "cifar-10-batches-py", n=3)
    train = load_dataset(str(tmp_path / "cifar-10-batches-py"), "train")
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == [f"c{i}" for i in range(10)] and train.name == "cifar10"
    assert train.labels[:3].tolist() == [0, 1, 2] and train.labels[3:6].tolist() == [1, 2, 3]
    row = rows["data_batch_2"][1]  # dataset index 3 + 1 = 4
    for c, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
        assert train.images[4, c, y, x].item() == row[c * 1024 + y * 32 + x]
    test = load_dataset(str(tmp_path), "test")  # the parent folder works too
    assert test.images.shape == (3, 3, 32, 32)
    assert np.array_equal(test.images.reshape(3, -1).numpy(), rows["test_batch"])
    assert load_dataset(str(tmp_path), "test", resize=16).images.shape == (3, 3, 16, 16)


def test_cifar10_python2_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    rows = _cifar_rows(4, 42)
    (folder / "test_batch").write_bytes(_py2_pickle(rows, [9, 8, 7, 6]))
    ds = load_dataset(str(folder), "test")
    assert ds.labels.tolist() == [9, 8, 7, 6]
    assert np.array_equal(ds.images.reshape(4, -1).numpy(), rows)


def test_cifar100_release_folder(tmp_path: Path) -> None:
    rows = _write_cifar100(tmp_path / "cifar-100-python", n=4)
    for split in ("train", "test"):
        ds = load_dataset(str(tmp_path / "cifar-100-python"), split)
        assert ds.images.shape == (4, 3, 32, 32) and ds.name == "cifar100"
        assert len(ds.classes) == 100 and ds.classes[99] == "f99"
        assert ds.labels.tolist() == [99, 98, 97, 96]
        assert ds.images[2, 1, 3, 4].item() == rows[split][2][1024 + 3 * 32 + 4]


def test_cifar_missing_batch(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "cifar-10-batches-py", skip="data_batch_4")
    assert len(load_dataset(str(tmp_path), "test")) == 3
    with pytest.raises(DataError, match="data_batch_4"):
        load_dataset(str(tmp_path), "train")


def test_cifar_pickle_with_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    _dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [os.getpid]}, folder / "test_batch")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset(str(folder), "test")


# --------------------------------------------------------------------------- downloads


class _Server:
    """A local HTTP server for one folder, counting GET requests."""

    def __init__(self, root: Path) -> None:
        counter = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                counter.append(self.path)
                super().do_GET()

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake cifar-10-python.tar.gz served on 127.0.0.1; yields (server, md5)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    src = tmp_path / "src"
    _write_cifar10(src / "cifar-10-batches-py", n=2)
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    with tarfile.open(srv_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((srv_dir / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    server = _Server(srv_dir)
    try:
        yield server, md5
    finally:
        server.close()


def _register(monkeypatch: pytest.MonkeyPatch, url: str, md5: str) -> None:
    monkeypatch.setitem(data.REMOTE_DATASETS, "cifar10",
                        RemoteDataset(url=url, md5=md5, folder="cifar-10-batches-py"))


def test_download_verify_unpack_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_cifar10) -> None:
    server, md5 = served_cifar10
    _register(monkeypatch, server.url("cifar-10-python.tar.gz"), md5)
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", cache_dir=cache)
    assert ds.images.shape == (10, 3, 32, 32) and ds.name == "cifar10"
    assert len(server.requests) == 1
    assert (cache / "cifar-10-batches-py" / "test_batch").is_file()
    assert not list(cache.rglob("*.part")) and not list(cache.glob(".*unpack"))
    test = load_dataset("CIFAR10", split="test", cache_dir=cache)
    assert len(test) == 2 and len(server.requests) == 1


def test_download_bad_checksum_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              served_cifar10) -> None:
    server, md5 = served_cifar10
    _register(monkeypatch, server.url("cifar-10-python.tar.gz"), "0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"0{{32}}.*{md5}"):
        load_dataset("cifar10", cache_dir=cache)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_download_network_error_names_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_cifar10) -> None:
    server, md5 = served_cifar10
    url = server.url("no-such-file.tar.gz")
    _register(monkeypatch, url, md5)
    with pytest.raises(DataError, match=url.replace(".", r"\.")):
        load_dataset("cifar10", cache_dir=tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_unsafe_archive_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_cifar10) -> None:
    server, _ = served_cifar10
    evil = tmp_path / "srv" / "evil.tar.gz"
    (tmp_path / "payload").write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "payload", arcname="../escaped")
    _register(monkeypatch, server.url("evil.tar.gz"), hashlib.md5(evil.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="escaped"):
        load_dataset("cifar10", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escaped").exists()


# --------------------------------------------------------------------------- digits


def test_digits_default_split() -> None:
    pytest.importorskip("sklearn")
    train, test = load_dataset(), load_dataset("digits", split="test")
    assert train.images.shape == (1500, 3, 8, 8) and test.images.shape == (297, 3, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == [str(i) for i in range(10)] and train.name == "digits"
    assert set(train.labels.tolist()) == set(range(10)) == set(test.labels.tolist())
    assert int(train.images.max()) == 255 and torch.equal(train.images[:, 0], train.images[:, 2])
    assert torch.equal(load_dataset().images, train.images)  # stable
    assert load_dataset("digits", resize=16).images.shape == (1500, 3, 16, 16)


def test_digits_without_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_dataset("digits")


# --------------------------------------------------------------------------- dataset, subsets, stats


def test_dataset_take_to_and_validation() -> None:
    ds = _tiny_ds()
    sub = ds.take(torch.tensor([4, 1]))
    assert torch.equal(sub.images[0], ds.images[4]) and sub.labels.tolist() == [1, 1]
    assert sub.classes == ds.classes and sub.name == "tiny"
    assert ds.to("cpu") is ds and "n=10" in repr(ds)
    meta = ds.to("meta")
    assert meta.images.device.type == "meta" and meta.labels.device.type == "meta" and len(meta) == 10
    with pytest.raises(DataError):
        ImageDataset(ds.images.float(), ds.labels, ds.classes, "bad")
    with pytest.raises(DataError):
        ImageDataset(ds.images, ds.labels[:3], ds.classes, "bad")


def test_seeded_subset() -> None:
    ds = _tiny_ds(20)
    a, b = seeded_subset(ds, 7, seed=1), seeded_subset(ds, 7, seed=1)
    assert len(a) == 7 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, seeded_subset(ds, 7, seed=2).images)
    assert len({tuple(x.flatten().tolist()) for x in a.images}) == 7  # distinct images
    assert len(seeded_subset(ds, 20, seed=0)) == 20
    for bad in (0, -1, 21):
        with pytest.raises(DataError, match=str(bad)):
            seeded_subset(ds, bad, seed=0)


def test_split_in_two() -> None:
    ds = _tiny_ds(11)
    ds.labels = torch.arange(11)  # labels identify the images
    first, second = split_in_two(ds, seed=3, fraction=0.3)
    assert len(first) == 3 and len(second) == 8
    assert sorted(first.labels.tolist() + second.labels.tolist()) == list(range(11))
    again = split_in_two(ds, seed=3, fraction=0.3)
    assert torch.equal(again[0].labels, first.labels) and torch.equal(again[1].labels, second.labels)
    assert len(split_in_two(ds, seed=0)[0]) == round(0.5 * 11)
    for bad in (0.0, 1.0, -0.5, 0.01):
        with pytest.raises(DataError):
            split_in_two(ds, seed=0, fraction=bad)


def test_channel_stats_and_normalize() -> None:
    images = torch.randint(0, 256, (9, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images)
    ref = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean.dtype == torch.float32 and mean.shape == (3,)
    assert torch.allclose(mean.double(), ref.mean(1), atol=1e-6)
    assert torch.allclose(std.double(), ref.std(1, unbiased=False), atol=1e-6)
    x = normalize(images, mean, std)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)
    expected = (images[2, 1, 3, 4].item() / 255 - mean[1]) / std[1]
    assert torch.allclose(x[2, 1, 3, 4], expected, atol=1e-5)
    assert normalize(images, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16


# --------------------------------------------------------------------------- augmentation


def _batch(b: int = 16, h: int = 7, w: int = 9) -> torch.Tensor:
    return torch.randint(1, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("device", DEVICES)
def test_augment_identity(device: str) -> None:
    x = _batch().to(device)
    out = augment_batch(x, torch.Generator(device=device).manual_seed(0), crop_pad=0, flip=False)
    assert torch.equal(out, x) and out.dtype == torch.uint8


@pytest.mark.parametrize("device", DEVICES)
def test_augment_flip_only(device: str) -> None:
    x = _batch(64).to(device)
    out = augment_batch(x, torch.Generator(device=device).manual_seed(0), crop_pad=0, flip=True)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54  # roughly half


@pytest.mark.parametrize("device", DEVICES)
def test_augment_crop_is_shifted_window(device: str) -> None:
    p, h, w = 2, 7, 9
    x = _batch(48, h, w).to(device)
    out = augment_batch(x, torch.Generator(device=device).manual_seed(1), crop_pad=p, flip=False)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts = []
    for o, pi in zip(out, padded):
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(o, pi[:, dy:dy + h, dx:dx + w])]
        assert found, "output is not a window of the padded image"
        shifts.append(found[0])
    assert len(set(shifts)) > 5  # each image its own shift


@pytest.mark.parametrize("device", DEVICES)
def test_augment_crop_and_flip_window(device: str) -> None:
    p, h, w = 1, 5, 6
    x = _batch(32, h, w).to(device)
    out = augment_batch(x, torch.Generator(device=device).manual_seed(2), crop_pad=p, flip=True)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for o, pi in zip(out, padded):
        windows = [pi[:, dy:dy + h, dx:dx + w] for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
        assert any(torch.equal(o, win) or torch.equal(o, win.flip(-1)) for win in windows)


@pytest.mark.parametrize("device", DEVICES)
def test_augment_reproducible_from_generator_state(device: str) -> None:
    x = _batch().to(device)
    g = torch.Generator(device=device).manual_seed(7)
    state = g.get_state()
    a = augment_batch(x, g)
    b = augment_batch(x, g)
    g.set_state(state)
    assert torch.equal(augment_batch(x, g), a) and not torch.equal(a, b)


def test_augment_rejects_bad_input() -> None:
    g = torch.Generator()
    with pytest.raises(DataError):
        augment_batch(_batch().float(), g)
    with pytest.raises(DataError):
        augment_batch(_batch(), g, crop_pad=-1)


# --------------------------------------------------------------------------- device loader


@pytest.mark.parametrize("device", DEVICES)
def test_loader_covers_epoch_once(device: str) -> None:
    ds = _tiny_ds(23, device=device)
    ds.labels = torch.arange(23, device=device)
    loader = DeviceLoader(ds, 5, torch.Generator(device=device).manual_seed(0))
    assert len(loader) == 5
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 5 and [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
        seen = torch.cat([y for _, y in batches]).cpu()
        assert Counter(seen.tolist()) == Counter(range(23))
        x, y = batches[0]
        assert x.dtype == torch.float32 and x.shape == (5, 3, 5, 6) and y.dtype == torch.int64
        assert x.device.type == y.device.type == torch.device(device).type


@pytest.mark.parametrize("device", DEVICES)
def test_loader_drop_last_and_no_shuffle(device: str) -> None:
    ds = _tiny_ds(23, device=device)
    ds.labels = torch.arange(23, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    loader = DeviceLoader(ds, 5, g, drop_last=True, shuffle=False, augment=False)
    assert len(loader) == 4
    batches = list(loader)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(20))
    mean, std = channel_stats(ds.images)
    assert torch.allclose(batches[1][0], normalize(ds.images[5:10], mean, std))
    assert len(DeviceLoader(ds, 23, g, drop_last=True)) == 1
    assert len(DeviceLoader(ds, 24, g)) == 1
    with pytest.raises(DataError):
        DeviceLoader(ds, 24, g, drop_last=True)
    with pytest.raises(DataError):
        DeviceLoader(ds, 0, g)


@pytest.mark.parametrize("device", DEVICES)
def test_loader_reproducible_from_generator_state(device: str) -> None:
    ds = _tiny_ds(17, device=device)
    g = torch.Generator(device=device).manual_seed(3)
    loader = DeviceLoader(ds, 4, g, crop_pad=2)
    list(loader)  # advance the generator a bit
    state = g.get_state()
    first = list(loader)
    second = list(loader)
    g.set_state(state)
    replay = list(loader)
    for (xa, ya), (xb, yb) in zip(first, replay):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(first, second))


def test_loader_normalisation_channels_last_and_forever() -> None:
    ds = _tiny_ds(12)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    loader = DeviceLoader(ds, 4, torch.Generator().manual_seed(0), mean=mean, std=std,
                          augment=False, shuffle=False, channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x, (ds.images[:4].float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1), atol=1e-6)
    no_op = DeviceLoader(ds, 4, torch.Generator().manual_seed(0), mean=mean, std=std, crop_pad=0, flip=False,
                         shuffle=False)
    assert torch.equal(next(iter(no_op))[0], x)  # augmentation with nothing switched on changes nothing
    flips = DeviceLoader(ds, 12, torch.Generator().manual_seed(0), mean=mean, std=std, crop_pad=0, shuffle=False)
    xf, plain = next(iter(flips))[0], normalize(ds.images, mean, std)
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(xf, plain))
    stream = loader.forever()
    assert len([next(stream) for _ in range(7)]) == 7  # crosses epoch boundaries


def test_loader_rejects_generator_on_other_device() -> None:
    ds = _tiny_ds(4).to("meta")
    with pytest.raises(DataError, match="generator"):
        DeviceLoader(ds, 2, torch.Generator())
    with pytest.raises(DataError, match="generator"):
        augment_batch(ds.images, torch.Generator())


def test_a_subset_of_an_image_folder_decodes_only_its_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_dataset(subset=n, seed=s) equals seeded_subset of the whole folder: without a cache of the whole
    decode only the n images kept are decoded, and nothing partial is cached; with one, they come from it."""
    make_image_folder(tmp_path / "imgs", classes=3, per_class=8, size=8)
    decoded: list[int] = []
    real = folders._decode_images
    monkeypatch.setattr(folders, "_decode_images", lambda paths, resize: decoded.append(len(paths)) or real(paths, resize))
    part = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache", subset=7, seed=3)
    assert decoded == [7] and not list((tmp_path / "cache").rglob("*.pt"))
    whole = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache")
    assert decoded == [7, 24]
    want = data.seeded_subset(whole, 7, 3)
    assert torch.equal(part.images, want.images) and torch.equal(part.labels, want.labels)
    assert part.classes == whole.classes
    cached = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache", subset=7, seed=3)
    assert decoded == [7, 24]  # taken from the cache of the whole folder
    assert torch.equal(cached.images, want.images) and torch.equal(cached.labels, want.labels)
    other = load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "cache", subset=7, seed=4)
    assert not torch.equal(other.labels, want.labels) or not torch.equal(other.images, want.images)
    with pytest.raises(DataError, match=r"subset size must be in 1\.\.24"):
        load_dataset(str(tmp_path / "imgs"), cache_dir=tmp_path / "fresh", subset=25)
    assert load_dataset("digits", subset=10, seed=1).images.shape[0] == 10  # named datasets subset after loading
