"""Run the links service: python -m services.links"""

from __future__ import annotations

from services.links.app import create_app
from services.links.settings import LinksSettings
from services.shared.service import serve


def main() -> None:
    settings = LinksSettings()
    serve("links", settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
