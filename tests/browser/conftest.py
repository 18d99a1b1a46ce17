"""Browser fixtures: Python Playwright driving the system Chromium (Debian's /usr/bin/chromium,
never a downloaded browser) against the same live stack the integration tests use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import Live

CHROMIUM = Path(os.environ.get("CHATPIC_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("CHATPIC_SHOTS", "/tmp/chatpic-shots"))
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if os.environ.get("CHATPIC_REQUIRE_BROWSER") and not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install chromium)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def urls(live: Live) -> dict[str, str]:
    return {
        "ingest": str(live.ingest.base_url).rstrip("/"),
        "links": str(live.links.base_url).rstrip("/"),
        "rooms": str(live.rooms.base_url).rstrip("/"),
    }


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
