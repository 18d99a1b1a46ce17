"""Helpers for the links tests: a cleared image, links with options, clients from other
addresses (the whole 127.0.0.0/8 is loopback, so 127.0.0.2 is a real second viewer)."""

from __future__ import annotations

import io
import random
from typing import Any

import httpx
from PIL import Image, ImageDraw

from tests.live import Live
from tests.unit.corpus import corpus_path

PHOTO = "Landscape_0.jpg"


def cleared_image(live: Live, name: str = PHOTO) -> tuple[str, str]:
    body = live.upload(corpus_path(name).read_bytes(), name).json()
    assert live.wait_status(body["image_id"]) == "cleared"
    return str(body["image_id"]), str(body["owner_token"])


def unique_photo(seed: int) -> bytes:
    """A photo-like JPEG no other test uses, so banning its hash touches nothing else."""
    rng = random.Random(seed)
    img = Image.new("RGB", (640, 480), (rng.randrange(256), rng.randrange(256), 90))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rng.randrange(600), rng.randrange(440)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 160)), fill=colour)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def cleared_upload(live: Live, data: bytes) -> tuple[str, str]:
    body = live.upload(data, "photo.jpg").json()
    assert live.wait_status(body["image_id"]) == "cleared"
    return str(body["image_id"]), str(body["owner_token"])


def make_link(live: Live, image: tuple[str, str], **options: Any) -> dict[str, Any]:
    image_id, owner_token = image
    resp = live.links.post(
        "/api/v1/links", json={"image_id": image_id, "owner_token": owner_token, **options}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def client_from(live: Live, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (a real, different peer)."""
    return httpx.Client(
        base_url=str(live.links.base_url),
        transport=httpx.HTTPTransport(local_address=address),
        timeout=30,
    )


def views(live: Live, link: dict[str, Any]) -> int:
    return int(live.db.links.find_one({"link_id": link["link_id"]})["views"])
