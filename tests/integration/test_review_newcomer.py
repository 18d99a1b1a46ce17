"""What a newcomer found in the review console, on the live stack: repeat reports no longer
inflate the per-reason counts (distinct reporters per reason, in MongoDB, through the public
report API and under concurrent intake), the icon is served without a login, decision notices
show once (the page names the parameters notice.js drops) and the rooms queue labels reporters'
notes apart from the chat."""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from services.shared.jobrepo import JobRepo
from services.shared.reports import ReportReason
from tests.integration.links_helpers import cleared_upload, make_link
from tests.integration.test_review_queues import (
    _ADDRESSES,
    decided,
    open_job,
    photo,
    report,
    reveal_status,
    take,
)
from tests.integration.test_review_rooms_queue import chat
from tests.integration.test_review_rooms_queue import report as room_report
from tests.live import Live


def test_repeat_reports_count_one_reporter_once_per_reason(live: Live) -> None:
    image = cleared_upload(live, photo(71))
    image_id = image[0]
    token = make_link(live, image, max_views=10)["token"]
    pest, second, third = next(_ADDRESSES), next(_ADDRESSES), next(_ADDRESSES)
    for _ in range(8):
        report(live, image_id, "spam", pest)
    report(live, image_id, "harassment", pest, details="and a second reason")
    for _ in range(3):
        report(live, image_id, "spam", second)

    job = open_job(live, image_id)
    assert job["reasons"] == {"spam": 2, "harassment": 1}
    assert job["reports"] == 12 and len(job["reporters"]) == 2
    assert len(job["reason_reporters"]) == 3  # spam:pest, harassment:pest, spam:second
    assert live.db.reports.count_documents({"image_id": image_id}) == 12  # every report kept
    assert reveal_status(live, token) == 200  # two people, however many reports: still served

    report(live, image_id, "spam", third)
    assert reveal_status(live, token) == 451  # the third distinct reporter hides it, as before
    job = open_job(live, image_id)
    assert job["reasons"] == {"spam": 3, "harassment": 1} and job.get("auto_hidden")

    view = live.review.get(f"/api/v1/jobs/{job['_id']}").json()["reports"]
    assert (view["count"], view["reporters"]) == (13, 3)
    assert view["reasons"] == {"spam": 3, "harassment": 1}
    page = live.review.get(f"/jobs/{job['_id']}", headers={"accept": "text/html"}).text
    times = "\u00d7"  # the page's multiplication sign
    assert f'id="report-reasons">spam {times}3, harassment {times}1<' in page, page[:2000]
    listing = live.review.get("/api/v1/queues/reports").json()
    rows = [j for j in listing.get("jobs", []) if j["job_id"] == job["_id"]]
    assert not rows or rows[0]["reasons"] == {"spam": 3, "harassment": 1}
    take(live.review, str(job["_id"]))  # decided, so no later test is handed this job
    decided(live.review, str(job["_id"]), "clear", "no_violation")


def test_concurrent_repeats_of_one_reporter_add_one_to_the_reason(live: Live) -> None:
    """JobRepo against the real database: 12 simultaneous spam reports from one reporter and
    one each from four others make spam 5 (one conditional update per report, no read-modify-
    write to lose or double an increment)."""
    repo = JobRepo(live.db)
    image_id = f"nc-{uuid.uuid4().hex}"  # no such image: the job is removed below
    filers = ["pest"] * 12 + [f"other{i}" for i in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda who: repo.add_report(image_id, who, "spam", 1), filers))
        job = live.db.review_jobs.find_one({"image_id": image_id})
        assert job is not None
        assert job["reasons"] == {"spam": 5} and job["reports"] == 16
        assert sorted(job["reporters"]) == sorted(set(filers))
        assert live.db.review_jobs.count_documents({"image_id": image_id}) == 1
        again = repo.add_report(image_id, "pest", "violence", 1)
        assert again["reasons"] == {"spam": 5, "violence": 1}
    finally:
        live.db.review_jobs.delete_many({"image_id": image_id})


def test_the_icon_is_public_and_a_real_icon(live: Live) -> None:
    resp = live.review_anon.get("/favicon.ico")
    assert resp.status_code == 200, resp.text[:200]
    assert resp.headers["content-type"] == "image/x-icon"
    icon = Image.open(io.BytesIO(resp.content))
    assert icon.format == "ICO" and icon.size == (16, 16)
    assert live.review.get("/favicon.ico").content == resp.content  # the same when logged in
    login = live.review_anon.get("/login")
    assert '<link rel="icon" href="/favicon.ico">' in login.text


def test_a_decision_notice_names_the_parameters_the_page_drops(live: Live) -> None:
    html = {"accept": "text/html"}
    page = live.review.get("/", params={"done": "clear", "empty": "reports"}, headers=html)
    assert page.status_code == 200
    assert 'id="notice" data-once="done empty">Decision recorded (clear).' in page.text
    assert '<script src="/assets/notice.js" defer></script>' in page.text
    script = live.review.get("/assets/notice.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "history.replaceState" in script.text and "data-once" in script.text
    closed = live.review_anon.get("/assets/notice.js")
    assert closed.status_code == 303 and closed.headers["location"].startswith("/login?next=")
    rooms = live.review.get("/rooms", params={"done": "dismiss"}, headers=html).text
    assert 'id="notice" data-once="done">Decision recorded (dismiss).' in rooms


def test_rooms_queue_labels_the_reporters_notes(live: Live) -> None:
    room_id, lines = chat(live, 2)
    rid = room_report(live, room_id, lines[-1], ReportReason.MINOR_SAFETY)
    html = live.review.get("/rooms", headers={"accept": "text/html"}).text
    start = html.index(f'id="report-{rid}"')
    card = html[start : html.index("</article>", start)]
    assert f'id="chat-{rid}">In the room:' in card and "line 0" in card
    notes = card[card.index('<section class="details"') :]
    assert "From the report, not the room:" in notes
    assert '<span class="badge">Reporter\'s note</span> <q>they keep at it</q>' in notes
    assert "line 0" not in notes  # the chat is not among the notes
    decided = live.review.post(
        f"/api/v1/room-reports/{rid}/decision",
        json={"action": "dismiss", "reason": "no_violation"},
    )
    assert decided.status_code == 200, decided.text  # leave the queue as it was
