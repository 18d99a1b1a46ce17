"""The README documents every setting each service reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.ingest.settings import IngestSettings
from services.links.settings import LinksSettings
from services.review.settings import ReviewSettings
from services.rooms.settings import RoomsSettings
from services.scanner.settings import ScannerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize(
    "settings", [IngestSettings, LinksSettings, ReviewSettings, RoomsSettings, ScannerSettings]
)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    missing = [
        f"CHATPIC_{name.upper()}"
        for name in settings.model_fields
        if f"`CHATPIC_{name.upper()}`" not in README
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def test_no_two_services_read_one_variable_for_different_things() -> None:
    """Every service reads the same environment; a shared name must mean the same setting."""
    from services.shared.settings import HttpServiceSettings

    common = set(HttpServiceSettings.model_fields)
    own = [
        set(s.model_fields) - common
        for s in (IngestSettings, LinksSettings, ReviewSettings, ScannerSettings)
    ]
    for i, a in enumerate(own):
        for b in own[i + 1 :]:
            assert not a & b, f"settings read by two services: {a & b}"
