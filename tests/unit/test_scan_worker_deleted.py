"""An owner may delete a pending upload; the sweeper then takes its bytes. A scanner that gets
the record afterwards skips it (nothing to scan, nothing will be shown) instead of retrying
into the dead-letter topic; a pending image without bytes is still an error."""

from __future__ import annotations

from typing import Any, cast

import pytest
from gridfs.errors import NoFile

from services.scanner.policy import PolicyThresholds
from services.scanner.worker import ScanWorker
from services.shared.events import IMAGE_UPLOADED, ImageUploaded, make_envelope
from tests.unit.twins import NoBanks


class Images:
    def __init__(self, status: str) -> None:
        self.doc = {"_id": "img", "status": status, "blob_id": "b1"}
        self.gets = 0

    def get(self, image_id: str) -> dict[str, Any]:
        self.gets += 1
        # The first read sees it pending; by the second the owner's deletion has landed.
        return self.doc if self.gets > 1 else {**self.doc, "status": "pending"}

    def record_verdict(self, *args: Any) -> bool:
        raise AssertionError("no verdict for an image without bytes")


class NoBytes:
    def get(self, blob_id: str) -> bytes:
        raise NoFile(blob_id)


def worker(images: Images) -> ScanWorker:
    unused = cast(Any, None)
    return ScanWorker(
        images=cast(Any, images),
        blobs=cast(Any, NoBytes()),
        banks=cast(Any, NoBanks()),
        model=unused,
        card=unused,
        publisher=unused,
        thresholds=PolicyThresholds(),
        max_frames=4,
    )


def envelope() -> Any:
    payload = ImageUploaded(image_id="img", content_type="image/jpeg", size=1)
    return make_envelope(IMAGE_UPLOADED, "img", payload)


def test_deleted_pending_upload_is_skipped() -> None:
    outcome = worker(Images("deleted")).handle(envelope())
    assert outcome.verdict == "deleted" and outcome.stored is False


def test_pending_image_without_bytes_is_still_an_error() -> None:
    with pytest.raises(NoFile):
        worker(Images("pending")).handle(envelope())
