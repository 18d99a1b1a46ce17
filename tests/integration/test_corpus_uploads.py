"""Every corpus file uploaded over HTTP: refused ones get the manifest's 4xx code; accepted ones
are stored without metadata and then scanned like any upload (no format trips the scanner)."""

from __future__ import annotations

import pytest

from services.shared.mongo import BlobStore
from tests.live import Live
from tests.unit.corpus import corpus_path
from tests.unit.test_corpus_manifest import ROWS, expected_code, metadata_found

accepted_ids: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_corpus_file_uploaded_gets_the_manifest_behaviour(live: Live, name: str) -> None:
    resp = live.upload(corpus_path(name).read_bytes(), "upload.bin")
    code = expected_code(name)
    if code is not None:
        assert 400 <= resp.status_code < 500, resp.text
        assert resp.json()["code"] == code and resp.json()["message"]
        return
    assert resp.status_code == 202, resp.text
    doc = live.db.images.find_one({"_id": resp.json()["image_id"]})
    stored = BlobStore(live.db).get(doc["blob_id"])
    assert stored != corpus_path(name).read_bytes()
    assert metadata_found(stored) == []
    assert metadata_found(BlobStore(live.db).get(doc["thumb_blob_id"])) == []
    accepted_ids[name] = doc["_id"]


def test_every_accepted_corpus_file_gets_a_real_verdict(live: Live) -> None:
    assert len(accepted_ids) >= 40, "runs after the parametrised uploads"
    for name, image_id in accepted_ids.items():
        status = live.wait_status(image_id)
        verdict = live.db.images.find_one({"_id": image_id})["verdict"]
        assert status in ("cleared", "review", "blocked"), name
        assert "undecodable" not in verdict["reasons"], (name, verdict)
        assert verdict["model"]["version"], name
