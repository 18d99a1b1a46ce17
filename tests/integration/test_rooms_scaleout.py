"""Two rooms processes: members of one room connected to different processes see each other
(frames relayed through the broker), and an owner's kick made on one process disconnects the
member on the other."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.sync.client import connect

from deploy.local.stack import ROOT, http_ok
from tests.integration.test_rooms_live import closed, make_room, wait_for
from tests.live import Live


@contextmanager
def second_rooms_process(live: Live) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**live.stack.service_env(), "CHATPIC_PORT": str(port)}
    log = open(live.stack.var_dir / "logs" / "rooms-2.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.rooms"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/readyz"):
            assert proc.poll() is None and time.monotonic() < deadline, "second rooms died"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_members_on_two_processes_talk(live: Live) -> None:
    room = make_room(live)
    path = f"/api/v1/rooms/{room['slug']}/ws"
    with (
        second_rooms_process(live) as port,
        connect(f"ws://127.0.0.1:{live.stack.ports.rooms}{path}") as a,
        connect(f"ws://127.0.0.1:{port}{path}") as b,
    ):
        a.send(json.dumps({"type": "join", "nickname": "here"}))
        wait_for(a, "welcome")
        b.send(json.dumps({"type": "join", "nickname": "there"}))
        assert {"nickname": "here", "tripcode": None} in wait_for(b, "welcome")["members"]
        # The second process's relay listener may still be starting: say it until heard.
        deadline = time.monotonic() + 20
        heard = None
        while heard is None and time.monotonic() < deadline:
            b.send(json.dumps({"type": "message", "text": "ping across"}))
            try:
                heard = wait_for(a, "message", timeout=1)
            except (AssertionError, TimeoutError):
                continue
        assert heard is not None and heard["text"] == "ping across"
        a.send(json.dumps({"type": "message", "text": "and back"}))
        assert wait_for(b, "message", text="and back")["nickname"] == "here"
        owner = {"Authorization": f"Bearer {room['owner_token']}"}
        resp = live.rooms.post(
            f"/api/v1/rooms/{room['slug']}/kick", json={"nickname": "there"}, headers=owner
        )
        assert resp.status_code == 200
        assert wait_for(b, "error")["code"] == "kicked"
        assert closed(b)
