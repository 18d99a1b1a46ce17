"""Decoding/normalisation and perceptual hashing on real corpus images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.scanner.hashing import (
    BankEntry,
    HashIndex,
    dhash_hex,
    hamming,
    is_hashable,
    phash_hex,
)
from services.scanner.imaging import frames_for_scan, load_normalized
from tests.unit.corpus import corpus_bytes

PHOTOS = ("DSCN0010.jpg", "DSCN0021.jpg", "Landscape_1.jpg", "iptc.jpg", "xmp_test.jpg")


def _phash_of(name: str) -> str:
    return phash_hex(load_normalized(corpus_bytes(name)))


def _resized_recompressed(name: str, factor: float = 0.4, quality: int = 55) -> bytes:
    with Image.open(io.BytesIO(corpus_bytes(name))) as src:
        rgb = src.convert("RGB")
    small = rgb.resize(
        (round(rgb.width * factor), round(rgb.height * factor)), Image.Resampling.LANCZOS
    )
    out = io.BytesIO()
    small.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


# --- imaging ---------------------------------------------------------------------------------


def test_load_normalized_returns_rgb_and_drafts_large_jpegs() -> None:
    img = load_normalized(corpus_bytes("Landscape_1.jpg"))  # stored 1800x1200
    assert img.mode == "RGB"
    assert img.size == (900, 600)  # DCT-scaled to the smallest size still >= 512 on each side
    assert load_normalized(corpus_bytes("DSCN0010.jpg")).size == (640, 480)


def test_exif_orientation_is_applied() -> None:
    upright = load_normalized(corpus_bytes("Landscape_1.jpg"))
    sideways = load_normalized(corpus_bytes("Landscape_6.jpg"))  # stored 1200x1800, EXIF 6
    assert sideways.size == upright.size


def test_unreadable_orientation_means_no_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("unrecognized data stream contents")

    monkeypatch.setattr("services.scanner.imaging.ImageOps.exif_transpose", broken)
    img = load_normalized(corpus_bytes("Landscape_6.jpg"))  # EXIF 6, now unreadable
    assert img.size == (600, 900)  # stored pixels, unrotated
    assert len(frames_for_scan(corpus_bytes("Landscape_6.jpg"))) == 1


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_block_still_decodes() -> None:
    assert load_normalized(corpus_bytes("hopper_bad_exif.jpg")).mode == "RGB"


@pytest.mark.parametrize(
    "name",
    [
        "truncated_jpeg.jpg",
        "truncated_image.png",
        "notjpeg.jpg",
        "decompression_bomb.gif",
        "png_decompression_dos.png",
        "broken_data_stream.png",  # zlib stream error in IDAT: load() raises in Pillow 13
        "hopper.tif",  # not an allowed format
        "test-ole-file.doc",
    ],
)
def test_undecodable_or_disallowed_bytes_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        load_normalized(corpus_bytes(name))
    with pytest.raises(ValueError):
        frames_for_scan(corpus_bytes(name))


def test_palette_transparency_is_flattened_onto_white() -> None:
    with Image.open(io.BytesIO(corpus_bytes("p_trns_single.png"))) as src:
        transparent_index = src.info["transparency"]
        mask = np.asarray(src) == transparent_index
    assert mask.any()
    img = np.asarray(load_normalized(corpus_bytes("p_trns_single.png")))
    assert (img[mask] == 255).all()


def test_frames_for_scan_animated_and_still() -> None:
    frames = frames_for_scan(corpus_bytes("iss634.gif"), max_frames=4)  # 42 frames
    assert len(frames) == 4
    assert all(f.mode == "RGB" and f.size == (245, 245) for f in frames)
    assert len({f.tobytes() for f in frames}) == 4  # really different frames
    assert len(frames_for_scan(corpus_bytes("dispose_bgnd.gif"), max_frames=10)) == 5
    still = frames_for_scan(corpus_bytes("DSCN0010.jpg"))
    assert len(still) == 1
    assert still[0].tobytes() == load_normalized(corpus_bytes("DSCN0010.jpg")).tobytes()


# --- hashes ----------------------------------------------------------------------------------


def test_hash_format() -> None:
    img = load_normalized(corpus_bytes("DSCN0010.jpg"))
    for value in (phash_hex(img), dhash_hex(img)):
        assert len(value) == 16
        int(value, 16)
    assert hamming("0" * 16, "f" * 16) == 64
    assert hamming("00000000000000ff", "0000000000000000") == 8
    with pytest.raises(ValueError):
        hamming("abc", "0" * 16)
    with pytest.raises(ValueError):
        hamming("z" * 16, "0" * 16)


def test_exif_rotated_copy_has_same_phash() -> None:
    assert hamming(_phash_of("Landscape_1.jpg"), _phash_of("Landscape_6.jpg")) <= 2


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "Landscape_1.jpg", "xmp_test.jpg"])
def test_resized_recompressed_copy_is_near(name: str) -> None:
    original = load_normalized(corpus_bytes(name))
    copy = load_normalized(_resized_recompressed(name))
    assert copy.size != original.size
    assert hamming(phash_hex(original), phash_hex(copy)) <= 8
    assert hamming(dhash_hex(original), dhash_hex(copy)) <= 8


def test_different_photos_are_far() -> None:
    hashes = [_phash_of(n) for n in PHOTOS]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert hamming(a, b) > 20


def test_hidden_colour_under_transparency_does_not_change_hash() -> None:
    base = load_normalized(corpus_bytes("DSCN0010.jpg")).convert("RGBA")
    arr = np.array(base)
    arr[100:300, 150:450, 3] = 0  # fully transparent window
    red, blue = arr.copy(), arr.copy()
    red[100:300, 150:450, :3] = (255, 0, 0)
    blue[100:300, 150:450, :3] = (0, 0, 255)
    img_red = load_normalized(_png(Image.fromarray(red, "RGBA")))
    img_blue = load_normalized(_png(Image.fromarray(blue, "RGBA")))
    assert img_red.tobytes() == img_blue.tobytes()
    assert phash_hex(img_red) == phash_hex(img_blue)
    assert dhash_hex(img_red) == dhash_hex(img_blue)
    # ...while the visible window really is part of the hashed image (white, not dropped).
    assert (np.asarray(img_red)[100:300, 150:450] == 255).all()


def test_flat_and_tiny_images_are_not_hashable() -> None:
    assert not is_hashable(Image.new("RGB", (512, 512), (40, 90, 160)))
    rng = np.random.default_rng(0)
    near_flat = np.clip(128 + rng.normal(0, 1.0, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert not is_hashable(Image.fromarray(near_flat, "RGB"))
    assert not is_hashable(load_normalized(corpus_bytes("tRNS_null_1x1.png")))
    photo = load_normalized(corpus_bytes("DSCN0010.jpg"))
    assert is_hashable(photo)
    assert not is_hashable(photo.resize((31, 200)))


# --- index -----------------------------------------------------------------------------------


def _bank() -> list[BankEntry]:
    return [
        BankEntry(entry_id=f"e{i}", bank="test-bank", hash_hex=_phash_of(n), reason=n)
        for i, n in enumerate(PHOTOS)
    ]


def test_index_finds_the_right_entry() -> None:
    index = HashIndex(_bank())
    assert len(index) == len(PHOTOS)
    query = phash_hex(load_normalized(_resized_recompressed("Landscape_1.jpg", factor=0.3)))
    match = index.nearest(query, max_distance=8)
    assert match is not None
    assert (match.entry_id, match.bank, match.reason) == ("e2", "test-bank", "Landscape_1.jpg")
    assert match.distance == hamming(query, match.hash_hex)
    exact = index.nearest(_phash_of("xmp_test.jpg"), max_distance=0)
    assert exact is not None and exact.entry_id == "e4" and exact.distance == 0


def test_index_respects_max_distance() -> None:
    index = HashIndex(_bank())
    target = _phash_of("DSCN0021.jpg")
    flipped = f"{int(target, 16) ^ 0b1011:016x}"  # 3 bits away
    assert index.nearest(flipped, max_distance=2) is None
    hit = index.nearest(flipped, max_distance=3)
    assert hit is not None and hit.entry_id == "e1" and hit.distance == 3
    assert index.nearest(_phash_of("hopper.webp"), max_distance=8) is None


def test_empty_index() -> None:
    index = HashIndex([])
    assert len(index) == 0
    assert index.nearest("0" * 16, max_distance=64) is None


def test_index_rejects_bad_hashes() -> None:
    with pytest.raises(ValueError):
        HashIndex([BankEntry("x", "b", "1234", "short")])
