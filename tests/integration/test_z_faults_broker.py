"""The in-memory broker is SIGKILLed while uploads are flowing and comes back empty (issue #9):
every upload accepted before, during and after the outage reaches exactly one verdict within a
bounded time (the outbox re-publishes what the broker never took or lost); uploads stay quick
meanwhile; none is linkable or served before its verdict, and bytes are served afterwards
for exactly the cleared ones. Runs late: it restarts the broker."""

from __future__ import annotations

import signal
import time

from tests.integration.faults_helpers import (
    Upload,
    UploadStream,
    assert_one_verdict_each,
    assert_served_only_if_cleared,
    bytes_served,
    wait_final,
)
from tests.integration.observability_helpers import eventually
from tests.live import Live

# Recovery bound: the relay retries refused publishes every 5 s, re-announces records the
# broker lost after CHATPIC_REPUBLISH_AFTER_S (30 s); the scanner rejoins its group in seconds.
RECOVERY_S = 75


def publish_failures(live: Live, uploads: list[Upload]) -> int:
    ids = [u.image_id for u in uploads]
    return sum(d["publish"]["failures"] for d in live.db.images.find({"_id": {"$in": ids}}))


def kill_broker(live: Live) -> None:
    proc = live.stack.procs.pop("broker")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_uploads_flowing_through_a_broker_kill_all_get_one_verdict(live: Live) -> None:
    served_before = bytes_served(live)
    with UploadStream(live, seed=921_000) as stream:
        stream.wait_for("before", 3)
        kill_broker(live)
        stream.phase = "during"  # uploads started from now on: the broker is gone
        restarted = False
        try:
            stream.wait_for("during", 6)
            during = [u for u in stream.accepted if u.phase == "during"]
            # No request waits for the broker (the outbox relay does).
            assert max(u.seconds for u in during) < 3.0, [u.seconds for u in during]
            docs = list(live.db.images.find({"_id": {"$in": [u.image_id for u in during]}}))
            assert all(d["status"] == "pending" for d in docs)
            # Nothing was announced while the broker was away; the relay tried and failed.
            assert all(d["publish"]["published_at"] is None for d in docs)
            eventually(lambda: publish_failures(live, during) > 0, 20, "the relay tried")
            # Nothing pending is ever linkable, and nothing at all was served meanwhile.
            assert {(u.link_status, u.link_code) for u in during} == {(409, "not_scanned_yet")}
            assert bytes_served(live) == served_before
            assert live.links.get("/readyz").status_code == 200  # HTTP services stay ready
        finally:
            live.stack.start_broker()  # empty: no topics, no offsets, no messages
            live.stack.create_topics()
            restarted = True
            stream.phase = "after"  # from now on: the broker is back
        back_at = time.monotonic()
        assert restarted
        stream.wait_for("after", 3)
    assert not stream.refused, stream.refused

    ids = [u.image_id for u in stream.accepted]
    took = wait_final(live, ids, timeout=RECOVERY_S)
    recovered = time.monotonic() - back_at
    # Accepted = verdicts, one each; right after each upload its link was refused unless the
    # verdict was already there.
    statuses = assert_one_verdict_each(live, ids)
    for u in stream.accepted:
        if u.link_status == 201:
            assert statuses[u.image_id] == "cleared", u
        else:
            assert (u.link_status, u.link_code) == (409, "not_scanned_yet"), u
    docs = live.db.images.find({"_id": {"$in": ids}})
    # Every one was announced: acknowledged at least once (after the restart for those
    # uploaded meanwhile), or, for a record the broker took just as it was killed, refused
    # (the acknowledgement was lost with the broker) and yet scanned from that very record.
    for d in docs:
        assert d["publish"]["attempts"] >= 1 or d["publish"].get("failures", 0) >= 1, d
    served = assert_served_only_if_cleared(
        live, [(u.image_id, u.owner_token) for u in stream.accepted]
    )
    assert served == list(statuses.values()).count("cleared") >= 1
    last = live.db.images.find({"_id": {"$in": ids}}).sort("scanned_at", -1).limit(1)[0]
    print(
        f"last decided: {[u.phase for u in stream.accepted if u.image_id == last['_id']]} "
        f"publish {last['publish']['attempts']} ok / {last['publish']['failures']} refused"
    )
    print(
        f"{len(ids)} uploads ({stream.count('before')} before, {stream.count('during')} during, "
        f"{stream.count('after')} after); all decided {recovered:.1f} s after the broker was "
        f"back (waited {took:.1f} s after the last upload)"
    )
