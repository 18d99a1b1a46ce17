"""Issue #9, hostile input over HTTP: a representative subset of the generated hostile files
(tests.fuzz: polyglots, SVG/HTML/other formats renamed, truncated files, bombs, huge ICC and
looping EXIF) uploaded to the live stack with image names and image content types.

Every answer is 202 or a 4xx JSON {code, message}, never a 5xx; nothing is stored for a refusal;
the stored bytes (GridFS, image and thumbnail) of an accepted file carry no metadata and none of
'<html', '<script', 'PK\\x03\\x04' (nor any other payload marker the upload carried); and an
accepted polyglot, once the scanner has cleared it, is served through a link as exactly those
re-encoded bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.shared.mongo import BlobStore
from tests.fuzz import craft
from tests.fuzz.oracle import surviving_needles
from tests.fuzz.structure import patch_dimensions
from tests.integration.links_helpers import make_link
from tests.live import Live
from tests.unit.corpus import corpus_bytes
from tests.unit.test_corpus_manifest import metadata_found

STORED_NEEDLES = (b"<html", b"<script", b"PK\x03\x04")
MiB = 1024 * 1024


def _patched(name: str, width: int, height: int) -> bytes:
    data = patch_dimensions(corpus_bytes(name), width, height)
    assert data is not None
    return data


def _cut(name: str, fraction: float) -> bytes:
    data = corpus_bytes(name)
    return data[: int(len(data) * fraction)]


def _cases() -> list[tuple[str, bytes, str]]:
    """(label, bytes, expectation): "served" (202, cleared, served clean), "202", or a code."""
    photo = corpus_bytes("DSCN0010.jpg")
    made = craft.polyglots(
        photo,
        corpus_bytes("transparent.png"),
        corpus_bytes("transparent.gif"),
        corpus_bytes("hopper.bmp"),
    )
    polyglots = [
        "jpeg+html-in-COM",
        "jpeg+html-after-EOI",
        "jpeg+html-in-XMP",
        "jpeg+zip",
        "png+html-in-tEXt",
        "png+zip-after-IEND",
        "gif+js",
        "gif+zip (GIFAR)",
        "webp+html-chunk",
        "bmp+html-after-pixels",
    ]
    foreign = craft.foreign_files()
    renamed = ["svg.jpg", "svg-with-bom.png", "html.png", "xhtml.webp", "php.jpg", "pdf.jpg"]
    renamed += ["zip.jpg", "exe.jpg"]
    exif_loop = craft.exif_structures()["ifd0-next-is-itself"]
    return [
        *[(f"polyglot {name}", made[name], "served") for name in polyglots],
        *[(f"renamed {name}", foreign[name], "unsupported_type") for name in renamed],
        ("truncated DSCN0010.jpg at 50%", _cut("DSCN0010.jpg", 0.5), "corrupt_image"),
        ("truncated xiaomi.heic at 30%", _cut("xiaomi.heic", 0.3), "corrupt_image"),
        ("truncated hopper.webp at 60%", _cut("hopper.webp", 0.6), "corrupt_image"),
        ("truncated transparent.png at 40%", _cut("transparent.png", 0.4), "corrupt_image"),
        ("bomb: jpeg with 1000 extra scans", craft.jpeg_scan_flood(1000), "corrupt_image"),
        ("bomb: jpeg with 1 MB of COM segments", craft.jpeg_segment_flood(MiB), "corrupt_image"),
        ("bomb: tiff with a 1 MB chain of IFDs", craft.tiff_ifd_chain(MiB // 126), "202"),
        ("bomb: png declaring 60000x60000", _patched("basi3p08.png", 60_000, 60_000), "dims"),
        ("bomb: gif screen 60000x1", _patched("transparent.gif", 60_000, 1), "dims"),
        ("bomb: webp canvas 2^24 square", _patched("flower2.webp", 2**24, 2**24), "dims"),
        ("bomb: apng declaring 1e9 frames", craft.apng_declaring_frames(10**9, 8), "frames"),
        ("bomb: png IDAT inflating to 64 MB", craft.png_idat_zlib_bomb(64 * MiB), "202"),
        (
            "10 MB ICC profile in a jpeg",
            craft.jpeg_with_icc(craft.icc_profiles(10 * MiB)["random-10MB"]),
            "202",
        ),
        ("EXIF whose IFD0 points at itself", craft.jpeg_with_exif(exif_loop), "202"),
    ]


CASES = _cases()
_EXPECTED_CODE = {"dims": "dimensions_too_large", "frames": "too_many_frames"}
accepted: dict[str, tuple[bytes, dict[str, Any]]] = {}


def test_the_subset_is_representative() -> None:
    assert len(CASES) >= 30
    kinds = {label.split()[0] for label, _, _ in CASES}
    assert {"polyglot", "renamed", "truncated", "bomb:"} <= kinds


@pytest.mark.parametrize(("label", "data", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_upload_gets_a_202_or_a_4xx_with_a_code(
    live: Live, label: str, data: bytes, expect: str
) -> None:
    before = live.db.images.count_documents({})
    resp = live.ingest.post("/api/v1/images", files={"file": ("holiday.jpg", data, "image/jpeg")})
    assert resp.status_code < 500, resp.text
    body = resp.json()
    created = live.db.images.count_documents({}) - before
    if resp.status_code != 202:
        assert 400 <= resp.status_code < 500
        assert isinstance(body["code"], str) and body["code"] and body["message"], body
        assert created == 0  # nothing is stored for a refusal
        assert expect not in ("served", "202"), body
        assert body["code"] == _EXPECTED_CODE.get(expect, expect), body
        return
    assert expect in ("served", "202"), body
    assert created == 1
    doc = live.db.images.find_one({"_id": body["image_id"]})
    blobs = BlobStore(live.db)
    for stored in (blobs.get(doc["blob_id"]), blobs.get(doc["thumb_blob_id"])):
        assert metadata_found(stored) == []
        assert not surviving_needles(data, stored)
        assert not [n for n in STORED_NEEDLES if n in stored]
        assert stored != data
    accepted[label] = (data, body)


def test_accepted_polyglots_are_served_as_the_reencoded_image_only(live: Live) -> None:
    served = [label for label, _, expect in CASES if expect == "served"]
    assert set(served) <= set(accepted), "runs after the uploads above"
    blobs = BlobStore(live.db)
    for label in served:
        data, body = accepted[label]
        assert live.wait_status(body["image_id"]) == "cleared", label
        link = make_link(live, (body["image_id"], body["owner_token"]))
        resp = live.view(link["token"])
        assert resp.status_code == 200, (label, resp.text)
        doc = live.db.images.find_one({"_id": body["image_id"]})
        assert resp.content == blobs.get(doc["blob_id"]), label
        assert resp.headers["content-type"] == body["content_type"]
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert not surviving_needles(data, resp.content), label
        assert not [n for n in STORED_NEEDLES if n in resp.content], label


def test_the_form_upload_refuses_hostile_files_with_a_page_not_a_500(live: Live) -> None:
    for name in ("svg.jpg", "html.png"):
        resp = live.ingest.post(
            "/upload", files={"file": (name, craft.foreign_files()[name], "image/png")}
        )
        assert resp.status_code == 415, resp.text
        assert resp.headers["content-type"].startswith("text/html")
        assert b"<script>alert" not in resp.content  # the upload is never echoed
