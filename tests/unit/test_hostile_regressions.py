"""Issue #9: the intake bugs the hostile-input generators found, each kept as a test.

1. A TIFF whose IFDs form a long chain: the intake asked Pillow for ``n_frames`` (to say that
   extra pages were dropped), which walks every IFD with a quadratic loop-detection list: a 7 MB
   chain of 64,000 IFDs took 31 s, a 20 MB one minutes. Now ``is_animated`` (IFD0's next pointer).
2. A progressive JPEG with thousands of tiny repeated scans: libjpeg runs each over the whole
   coefficient buffer; 1,000 extra 31-byte scans on a 1024-px square took seconds, on 16 MP 11.6 s
   (125 KB file). Now more than 100 scans, or 2,048 segments, is a 422 before decoding.
3. A HEIC photo cut short: libheif paints missing grid tiles green instead of failing, so a
   truncated phone photo was accepted and served 2/3 green. Now every item extent in the
   ``iloc`` box must lie inside the file.
4. A 50 MP 16-bit grey PNG of 350 KB grew the process by 1.2 GiB (float64 temporaries while
   scaling to 8 bits); now ~0.55 GiB.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from services.ingest.intake import IntakeLimits, sanitize
from services.ingest.intake_probe import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, read_jpeg_scans
from services.shared.errors import IntakeError
from tests.fuzz import craft
from tests.fuzz.guard import Bounds, Case, GuardedPool, MiB
from tests.unit.corpus import corpus_bytes

LIMITS = IntakeLimits()

pytestmark = pytest.mark.filterwarnings("ignore")


def _refused(data: bytes) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        sanitize(data, LIMITS)
    return caught.value


# --- 1. TIFF IFD chains ---------------------------------------------------------------------------


def test_a_long_chain_of_tiff_ifds_is_read_in_constant_time() -> None:
    data = craft.tiff_ifd_chain(30_000)  # 3.4 MB; took ~9 s before the fix
    started = time.perf_counter()
    out = sanitize(data, LIMITS)
    assert time.perf_counter() - started < 1.5
    assert (out.width, out.height, out.frames_dropped) == (1, 1, True)


def test_single_and_multi_page_tiffs_still_say_whether_pages_were_dropped() -> None:
    assert sanitize(corpus_bytes("multipage.tiff"), LIMITS).frames_dropped
    assert not sanitize(corpus_bytes("hopper.tif"), LIMITS).frames_dropped
    assert sanitize(corpus_bytes("sugarshack.mpo"), LIMITS).frames_dropped
    assert not sanitize(corpus_bytes("Canon_40D.jpg"), LIMITS).frames_dropped


# --- 2. JPEG scans and segments -------------------------------------------------------------------


def test_a_jpeg_with_a_thousand_repeated_scans_is_refused_before_decoding() -> None:
    started = time.perf_counter()
    error = _refused(craft.jpeg_scan_flood(1000))
    assert time.perf_counter() - started < 0.5
    assert (error.code, error.status) == ("corrupt_image", 422)
    assert (error.data["limit"], error.data["maximum"]) == ("scans", MAX_JPEG_SCANS)
    assert str(MAX_JPEG_SCANS) in error.message


def test_scan_limit_boundary() -> None:
    progressive = craft.jpeg_scan_flood(0, side=64)
    scans = read_jpeg_scans(progressive)
    assert scans == 10  # libjpeg's default progressive script for colour
    assert sanitize(craft.jpeg_scan_flood(MAX_JPEG_SCANS - scans, side=64), LIMITS).width == 64
    assert _refused(craft.jpeg_scan_flood(MAX_JPEG_SCANS - scans + 1, side=64)).data["limit"] == (
        "scans"
    )


@pytest.mark.parametrize(
    ("name", "scans"),
    [
        ("Landscape_0.jpg", 1),
        ("DSCN0010.jpg", 1),  # its EXIF thumbnail has a scan of its own: not counted
        ("icc_profile_big.jpg", 10),  # progressive; 43 more FF DA pairs in its ICC profile
        ("sugarshack.mpo", 1),  # the second image of the MPO is not decoded
        ("junk_jpeg_header.jpg", 1),  # junk between segments is skipped, as libjpeg does
        ("truncated_jpeg.jpg", 10),
    ],
)
def test_scans_are_counted_from_the_segment_structure(name: str, scans: int) -> None:
    assert read_jpeg_scans(corpus_bytes(name)) == scans


def test_a_jpeg_of_millions_of_empty_segments_is_refused_quickly() -> None:
    data = craft.jpeg_segment_flood(20 * 1024 * 1024 - 4096)  # 5M COM segments; ~7 s before
    started = time.perf_counter()
    error = _refused(data)
    assert time.perf_counter() - started < 0.5
    assert (error.data["limit"], error.data["maximum"]) == ("segments", MAX_JPEG_SEGMENTS)


def test_a_jpeg_with_a_full_icc_profile_is_within_the_segment_limit() -> None:
    """255 APP2 segments: the most an ICC profile can use."""
    data = craft.jpeg_with_icc(bytes(255 * 100), chunk=100)
    assert sanitize(data, LIMITS).format == "jpeg"


# --- 3. truncated HEIF --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xiaomi.heic", "arrow.heic", "RGBA_10__29x100.heif"])
@pytest.mark.parametrize("fraction", [0.16, 0.5, 0.9, 0.999])
def test_a_truncated_heif_is_refused_not_served_with_green_tiles(
    name: str, fraction: float
) -> None:
    data = corpus_bytes(name)
    error = _refused(data[: int(len(data) * fraction)])
    assert (error.code, error.status) == ("corrupt_image", 422)


def _iloc(data: bytes | bytearray) -> int:
    """Offset of the iloc box's payload (after its 8-byte header)."""
    return data.index(b"iloc") + 4


def test_a_hostile_iloc_box_costs_nothing() -> None:
    data = bytearray(corpus_bytes("xiaomi.heic"))
    at = _iloc(data)
    version = data[at]
    count_at = at + 6
    wide = 4 if version == 2 else 2
    data[count_at : count_at + wide] = b"\xff" * wide  # item count: 65,535 or 4 billion
    started = time.perf_counter()
    assert _refused(bytes(data)).code == "corrupt_image"  # it runs past its box
    zero_widths = bytearray(corpus_bytes("xiaomi.heic"))
    zero_widths[at + 4 : at + 6] = b"\x00\x00"  # offset/length/base/index sizes all 0
    with pytest.raises(IntakeError):
        sanitize(bytes(zero_widths), LIMITS)
    assert time.perf_counter() - started < 2.0


def test_heif_and_avif_files_that_are_whole_still_decode() -> None:
    for name in ("xiaomi.heic", "arrow.heic", "RGBA_10__29x100.heif", "rot1mir0.avif"):
        out = sanitize(corpus_bytes(name), LIMITS)
        with Image.open(io.BytesIO(out.data)) as img:
            img.load()


# --- 4. memory of 16-bit grey ---------------------------------------------------------------------


def test_sixteen_bit_grey_is_scaled_without_a_gigabyte_of_temporaries() -> None:
    """A 16 MP 16-bit grey PNG (a few hundred KB): the float64 scaling used to make a temporary
    per step (~3 x 128 MB, and 1.2 GiB at 50 MP); now one copy, scaled in place."""
    side = 4000
    ramp = (np.add.outer(np.arange(side), np.arange(side)) * 8).astype(np.uint16)
    data = craft.encoded(Image.fromarray(ramp), "PNG", compress_level=1)
    with GuardedPool(workers=1, bounds=Bounds(seconds=60, rss_growth=1536 * MiB)) as pool:
        (result,) = pool.run([Case("16-bit grey 16 MP", data)])
    assert result.kind == "accepted", result.describe()
    assert result.rss_growth < 300 * MiB, result.describe()  # 396 MiB before, 182 after
