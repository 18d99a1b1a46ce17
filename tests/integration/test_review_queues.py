"""Review queues on the live stack: report intake and auto-hide, priorities, leases, and every
decision with its effect downstream (links, scanner, banks, audit, metrics)."""

from __future__ import annotations

import io
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from PIL import Image

from services.shared.mongo import BlobStore
from tests.integration.faults_helpers import all_samples, metric_total
from tests.integration.links_helpers import cleared_upload, client_from, make_link, unique_photo
from tests.live import Live

# Every report comes from an address of its own (127/8 is all loopback), so reporters are
# distinct and no test spends another's rate limit.
_ADDRESSES = (f"127.61.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def report(
    live: Live, image_id: str, reason: str, address: str | None = None, **extra: Any
) -> None:
    with client_from(live, address or next(_ADDRESSES)) as client:
        resp = client.post(
            "/api/v1/reports", json={"reason": reason, "image_id": image_id, **extra}
        )
    assert resp.status_code == 201, resp.text


def open_job(
    live: Live, image_id: str, kind: str = "reports", timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = live.db.review_jobs.find_one({"image_id": image_id, "kind": kind, "state": "open"})
        if job is not None:
            return dict(job)
        assert time.monotonic() < deadline, f"no open {kind} job for {image_id}"
        time.sleep(0.2)


def take(client: httpx.Client, job_id: str) -> dict[str, Any]:
    resp = client.post(f"/api/v1/jobs/{job_id}/lease")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def decide(
    client: httpx.Client, job_id: str, action: str, reason: str, **extra: Any
) -> httpx.Response:
    return client.post(
        f"/api/v1/jobs/{job_id}/decision", json={"action": action, "reason": reason, **extra}
    )


def decided(
    client: httpx.Client, job_id: str, action: str, reason: str, **extra: Any
) -> dict[str, Any]:
    resp = decide(client, job_id, action, reason, **extra)
    assert resp.status_code == 200, resp.text
    body = dict(resp.json())
    assert body["decided"] == job_id and body["action"] == action
    if body["next_job_id"]:  # "Submit & next" leased it to us: give it back for other tests
        client.post(f"/api/v1/jobs/{body['next_job_id']}/release")
    return body


def audited(live: Live, image_id: str, action: str, actor: str) -> dict[str, Any]:
    found = live.db.audit.find_one({"target": image_id, "action": f"review.{action}"})
    assert found is not None, f"no audit record review.{action} for {image_id}"
    assert found["actor"] == actor and found["reason"]
    return dict(found)


def reveal_status(live: Live, token: str) -> int:
    return live.links.post(f"/s/{token}/reveal").status_code


def wait_links_ended(live: Live, link_id: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not live.db.links.find_one({"link_id": link_id}).get("revoked"):
        assert time.monotonic() < deadline, "image.takedown did not end the link in time"
        time.sleep(0.2)


def photo(seed: int) -> bytes:
    return unique_photo(seed + 60_000 + uuid.uuid4().int % 1_000_000)


def test_three_distinct_reporters_hide_the_image_and_clear_brings_it_back(live: Live) -> None:
    image = cleared_upload(live, photo(1))
    image_id = image[0]
    link = make_link(live, image, max_views=10)
    token = link["token"]
    assert reveal_status(live, token) == 200

    first, second, third = next(_ADDRESSES), next(_ADDRESSES), next(_ADDRESSES)
    hides = metric_total(live.links, "chatpic_links_auto_hides_total")
    report(live, image_id, "harassment", first, details="posted to mock me")
    report(live, image_id, "spam", first)  # the same reporter again: not a new person
    report(live, image_id, "harassment", second)
    assert reveal_status(live, token) == 200  # two distinct people: still served
    report(live, image_id, "violence", third)

    refused = live.links.post(f"/s/{token}/reveal")  # three: hidden at once, pending review
    assert refused.status_code == 451 and refused.json()["code"] == "removed"
    doc = live.db.images.find_one({"_id": image_id})
    assert doc["status"] == "review" and doc["hidden_by"] == "reports"
    assert metric_total(live.links, "chatpic_links_auto_hides_total") == hides + 1

    job = open_job(live, image_id)
    view = live.review.get(f"/api/v1/jobs/{job['_id']}").json()
    assert view["reports"]["count"] == 4 and view["reports"]["reporters"] == 3
    assert view["reports"]["reasons"] == {"harassment": 2, "spam": 1, "violence": 1}
    assert view["reports"]["auto_hidden"] is True
    assert [t["details"] for t in view["reports"]["texts"]] == ["posted to mock me"]
    assert view["image"]["links"] == 1 and view["image"]["uploaded_at"]
    assert "reporters" not in str(view["reports"]["texts"])  # no reporter hashes shown
    assert live.db.review_jobs.count_documents({"image_id": image_id, "state": "open"}) == 1

    take(live.review, job["_id"])
    decided(live.review, job["_id"], "clear", "no_violation", note="banter between friends")
    assert reveal_status(live, token) == 200  # the link serves again
    doc = live.db.images.find_one({"_id": image_id})
    assert doc["status"] == "cleared" and doc["cleared_at"] >= doc["hidden_at"]
    assert "hidden_by" not in doc
    assert live.db.reports.count_documents({"image_id": image_id, "state": "open"}) == 0
    record = audited(live, image_id, "clear", "admin")
    assert record["job_id"] == job["_id"] and record["note"] == "banter between friends"


def test_minor_safety_report_jumps_the_queue(live: Live) -> None:
    older = cleared_upload(live, photo(2))[0]
    newer = cleared_upload(live, photo(3))[0]
    report(live, older, "spam")
    report(live, newer, "minor_safety")
    listing = live.review.get("/api/v1/queues/reports").json()["jobs"]
    order = [j["image_id"] for j in listing]
    assert order.index(newer) < order.index(older)
    assert listing[order.index(newer)]["priority"] == 0
    # The next job handed out is a minor-safety one, whoever else is waiting.
    reviewer, _ = live.create_reviewer()
    got = reviewer.post("/api/v1/queues/reports/next").json()
    assert got["job"]["priority"] == 0 and got["job"]["lease"]["mine"] is True
    reviewer.post(f"/api/v1/jobs/{got['job_id']}/release")


def test_remove_ends_every_link_within_seconds(live: Live) -> None:
    image = cleared_upload(live, photo(4))
    link = make_link(live, image, max_views=5)
    report(live, image[0], "sexual_content")
    job = open_job(live, image[0])
    reviewer, _ = live.create_reviewer()
    name = reviewer.get("/api/v1/me").json()["username"]
    take(reviewer, job["_id"])
    decided(reviewer, job["_id"], "remove", "sexual_content")

    gone = live.links.post(f"/s/{link['token']}/reveal")
    assert gone.status_code == 451 and gone.json()["code"] == "removed"
    wait_links_ended(live, link["link_id"])  # image.takedown reached the links service
    doc = live.db.images.find_one({"_id": image[0]})
    assert doc["status"] == "removed" and doc["removal"]["reason"] == "review:sexual_content"
    assert doc["removal"]["by"] == name
    audited(live, image[0], "remove", name)


def _resized(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        small = img.convert("RGB").resize((img.width * 3 // 4, img.height * 3 // 4))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=60)
    return out.getvalue()


def test_remove_and_ban_blocks_a_resized_reupload(live: Live) -> None:
    data = photo(5)
    image = cleared_upload(live, data)
    report(live, image[0], "non_consensual")
    job = open_job(live, image[0])
    take(live.review, job["_id"])
    bank = f"review-test-{uuid.uuid4().hex[:6]}"
    body = decided(live.review, job["_id"], "remove_ban", "non_consensual", bank=bank)
    assert len(body["bank_entries"]) >= 2  # phash and dhash (and PDQ when its quality allows)

    entries = list(live.db.bank_entries.find({"bank": bank}))
    assert {e["signal_type"] for e in entries} >= {"phash", "dhash"}
    assert all(e["source"] == f"review:{job['_id']}" for e in entries)
    assert live.db.images.find_one({"_id": image[0]})["status"] == "removed"
    record = audited(live, image[0], "remove_ban", "admin")
    assert record["bank"] == bank and sorted(record["bank_entries"]) == sorted(body["bank_entries"])
    assert live.db.audit.count_documents({"action": "bank.add", "bank": bank}) == len(entries)

    copy = live.upload(_resized(data)).json()
    assert live.wait_status(copy["image_id"]) == "blocked"
    match = live.db.images.find_one({"_id": copy["image_id"]})["verdict"]["match"]
    assert match["bank"] == bank


def test_escalated_jobs_are_decided_by_admins_only(live: Live) -> None:
    image = cleared_upload(live, photo(6))
    report(live, image[0], "other", details="not sure about this one")
    job = open_job(live, image[0])
    reviewer, _ = live.create_reviewer()
    take(reviewer, job["_id"])
    escalated = decide(reviewer, job["_id"], "escalate", "other", note="needs legal")
    assert escalated.status_code == 200, escalated.text
    doc = live.db.review_jobs.find_one({"_id": job["_id"]})
    assert doc["queue"] == "escalated" and doc["state"] == "open" and doc["lease_owner"] is None

    for refused in (
        reviewer.post(f"/api/v1/jobs/{job['_id']}/lease"),
        decide(reviewer, job["_id"], "clear", "no_violation"),
        reviewer.post("/api/v1/queues/escalated/next"),
    ):
        assert refused.status_code == 403 and refused.json()["code"] == "admin_only"
    view = live.review.get(f"/api/v1/jobs/{job['_id']}").json()
    assert "escalate" not in view["actions"] and view["escalation"]["note"] == "needs legal"
    take(live.review, job["_id"])
    decided(live.review, job["_id"], "clear", "no_violation")
    assert live.db.images.find_one({"_id": image[0]})["status"] == "cleared"
    name = reviewer.get("/api/v1/me").json()["username"]
    audited(live, image[0], "escalate", name)
    audited(live, image[0], "clear", "admin")


def _removed_with_link(live: Live, seed: int) -> tuple[tuple[str, str], dict[str, Any]]:
    image = cleared_upload(live, photo(seed))
    link = make_link(live, image, max_views=5)
    report(live, image[0], "spam")
    job = open_job(live, image[0])
    take(live.review, job["_id"])
    decided(live.review, job["_id"], "remove", "spam")
    wait_links_ended(live, link["link_id"])
    return image, link


def test_appeal_overturned_restores_the_image_and_its_links(live: Live) -> None:
    (image_id, owner), link = _removed_with_link(live, 7)
    wrong = live.links.post(
        "/api/v1/appeals", json={"image_id": image_id, "owner_token": "x" * 32, "message": "hi"}
    )
    assert wrong.status_code == 404 and wrong.json()["code"] == "image_not_found"
    appeal = {"image_id": image_id, "owner_token": owner, "message": "It is a cake."}
    filed = live.links.post("/api/v1/appeals", json=appeal)
    assert filed.status_code == 201, filed.text
    again = live.links.post("/api/v1/appeals", json=appeal)
    assert again.status_code == 409 and again.json()["code"] == "appeal_pending"

    job_id = filed.json()["appeal_id"]
    view = take(live.review, job_id)
    assert view["queue"] == "appeals" and view["appeal"]["message"] == "It is a cake."
    assert set(view["actions"]) == {"uphold", "overturn", "escalate"}
    assert decide(live.review, job_id, "clear", "no_violation").json()["code"] == "invalid_action"
    decided(live.review, job_id, "overturn", "no_violation")

    doc = live.db.images.find_one({"_id": image_id})
    assert doc["status"] == "cleared" and doc["clearance"]["from"] == "removed"
    assert reveal_status(live, link["token"]) == 200  # the link the takedown ended is back
    assert metric(_metric_lines(live), "chatpic_review_appeals_overturned_total") >= 1
    audited(live, image_id, "overturn", "admin")
    late = live.links.post("/api/v1/appeals", json=appeal)
    assert late.status_code == 409 and late.json()["code"] == "not_removed"


def test_appeal_upheld_keeps_the_removal_and_cannot_be_repeated(live: Live) -> None:
    (image_id, owner), link = _removed_with_link(live, 8)
    appeal = {"image_id": image_id, "owner_token": owner, "message": ""}
    job_id = live.links.post("/api/v1/appeals", json=appeal).json()["appeal_id"]
    take(live.review, job_id)
    bad = decide(live.review, job_id, "uphold", "no_violation")
    assert bad.status_code == 400 and bad.json()["code"] == "reason_mismatch"
    decided(live.review, job_id, "uphold", "spam")
    assert live.db.images.find_one({"_id": image_id})["status"] == "removed"
    assert reveal_status(live, link["token"]) == 451
    again = live.links.post("/api/v1/appeals", json=appeal)
    assert again.status_code == 409 and again.json()["code"] == "appeal_decided"
    audited(live, image_id, "uphold", "admin")


def test_held_images_get_one_scanner_job_and_moot_jobs_close(live: Live) -> None:
    def held_image() -> str:
        image_id = uuid.uuid4().hex
        live.db.images.insert_one(
            {
                "_id": image_id,
                "status": "review",
                "blob_id": BlobStore(live.db).put(photo(9), "image/jpeg"),
                "content_type": "image/jpeg",
                "created_at": datetime.now(UTC),
                "publish": {"last_at": datetime.now(UTC) + timedelta(days=1)},
                "verdict": {"verdict": "review", "reasons": ["nsfw:review"], "nsfw_score": 0.6},
            }
        )
        return image_id

    kept, dropped = held_image(), held_image()
    job = open_job(live, kept, "scanner")
    open_job(live, dropped, "scanner")
    time.sleep(3.5)  # another intake pass: still one job per image
    assert live.db.review_jobs.count_documents({"image_id": kept}) == 1

    preview = live.review.get(f"/api/v1/jobs/{job['_id']}/image")
    assert preview.status_code == 200 and preview.content.startswith(b"\xff\xd8")
    assert preview.headers["cache-control"] == "private, no-store"
    assert "sandbox" in preview.headers["content-security-policy"]
    assert live.review_anon.get(f"/api/v1/jobs/{job['_id']}/image").status_code == 401

    reviewer, _ = live.create_reviewer()
    take(reviewer, job["_id"])
    page = reviewer.get(f"/jobs/{job['_id']}").text  # blurred unless the reviewer said so
    assert 'id="preview"' in page and 'class="blurred"' in page
    prefs = reviewer.post("/api/v1/me/prefs", json={"reveal_previews": True})
    assert prefs.status_code == 200, prefs.text
    assert 'class="blurred"' not in reviewer.get(f"/jobs/{job['_id']}").text
    decided(reviewer, job["_id"], "clear", "no_violation")
    doc = live.db.images.find_one({"_id": kept})
    assert doc["status"] == "cleared" and doc["cleared_at"] is not None  # the sweeper's clock

    live.db.images.update_one({"_id": dropped}, {"$set": {"status": "deleted"}})
    deadline = time.monotonic() + 15
    while live.db.review_jobs.count_documents({"image_id": dropped, "state": "open"}):
        assert time.monotonic() < deadline, "a job whose image was deleted stayed open"
        time.sleep(0.3)
    closed = live.db.review_jobs.find_one({"image_id": dropped})
    assert closed["state"] == "closed" and closed["closed_reason"] == "image_deleted"


def test_a_leased_job_belongs_to_one_reviewer_until_the_lease_expires(live: Live) -> None:
    image = cleared_upload(live, photo(10))
    report(live, image[0], "spam")
    job_id = open_job(live, image[0])["_id"]
    alice, _ = live.create_reviewer()
    bob, _ = live.create_reviewer()
    take(alice, job_id)

    taken = bob.post(f"/api/v1/jobs/{job_id}/lease")
    assert taken.status_code == 409 and taken.json()["code"] == "leased_elsewhere"
    refused = decide(bob, job_id, "clear", "no_violation")
    assert refused.status_code == 409 and refused.json()["code"] == "leased_elsewhere"
    seen = bob.get(f"/api/v1/jobs/{job_id}").json()
    assert seen["lease"]["held"] and not seen["lease"]["mine"] and not seen["may_decide"]
    for _ in range(3):  # bob is handed other jobs, never alice's
        got = bob.post("/api/v1/queues/reports/next", json={"skip": []}).json()
        assert got["job_id"] != job_id
        if got["job_id"]:
            bob.post(f"/api/v1/jobs/{got['job_id']}/release")

    past = datetime.now(UTC) - timedelta(seconds=1)
    live.db.review_jobs.update_one({"_id": job_id}, {"$set": {"lease_until": past}})
    take(bob, job_id)  # expired: free for anyone
    late = decide(alice, job_id, "remove", "spam")
    assert late.status_code == 409 and late.json()["code"] == "leased_elsewhere"
    decided(bob, job_id, "clear", "no_violation")
    gone = decide(bob, job_id, "clear", "no_violation")
    assert gone.status_code == 409 and gone.json()["code"] == "job_settled"


def test_decisions_are_validated_and_need_login_and_csrf(live: Live) -> None:
    image = cleared_upload(live, photo(11))
    report(live, image[0], "spam")
    job_id = open_job(live, image[0])["_id"]
    take(live.review, job_id)
    cases = [
        ({"action": "clear", "reason": ""}, 400, "invalid_reason"),
        ({"action": "clear", "reason": "not-a-reason"}, 400, "invalid_reason"),
        ({"action": "clear", "reason": "sexual_content"}, 400, "reason_mismatch"),
        ({"action": "remove", "reason": "no_violation"}, 400, "reason_mismatch"),
        ({"action": "overturn", "reason": "no_violation"}, 400, "invalid_action"),
        ({"action": "remove_ban", "reason": "spam", "bank": "Bad Bank!"}, 400, "invalid_bank"),
    ]
    for body, status, code in cases:
        resp = live.review.post(f"/api/v1/jobs/{job_id}/decision", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), body
    anon = live.review_anon.post(
        f"/api/v1/jobs/{job_id}/decision", json={"action": "clear", "reason": "no_violation"}
    )
    assert anon.status_code == 401
    no_csrf = live.review.post(
        f"/api/v1/jobs/{job_id}/decision",
        json={"action": "clear", "reason": "no_violation"},
        headers={"X-CSRF-Token": ""},
    )
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "csrf_failed"
    assert live.db.review_jobs.find_one({"_id": job_id})["state"] == "open"
    live.review.post(f"/api/v1/jobs/{job_id}/release")


def _metric_lines(live: Live) -> str:
    return live.review.get("/metrics").text


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def test_queue_depths_and_metrics(live: Live) -> None:
    review = live.review
    clears = metric_total(review, "chatpic_review_decisions_total", action="clear")
    timed = metric_total(review, "chatpic_review_report_to_decision_seconds_count")
    image = cleared_upload(live, photo(12))
    report(live, image[0], "spam")
    job_id = open_job(live, image[0])["_id"]
    queues = {q["queue"]: q for q in review.get("/api/v1/queues").json()["queues"]}
    assert set(queues) == {"reports", "scanner", "appeals", "escalated"}
    assert queues["reports"]["depth"] >= 1 and queues["reports"]["oldest_age_s"] >= 0
    # The gauges follow the database (the intake loop refreshes them every few seconds).
    deadline = time.monotonic() + 10
    while metric_total(review, "chatpic_review_queue_depth", queue="reports") < 1:
        assert time.monotonic() < deadline, "the reports queue depth gauge never counted our job"
        time.sleep(0.3)
    assert metric_total(review, "chatpic_review_oldest_job_age_seconds", queue="reports") >= 0
    assert all_samples(review, "chatpic_review_oldest_job_age_seconds")  # every queue exported
    take(review, job_id)
    decided(review, job_id, "clear", "no_violation")
    # One decision counted, and the time from the report to it observed once.
    assert metric_total(review, "chatpic_review_decisions_total", action="clear") == clears + 1
    assert metric_total(review, "chatpic_review_report_to_decision_seconds_count") == timed + 1
    assert "chatpic_review_appeals_overturned_total" in _metric_lines(live)
