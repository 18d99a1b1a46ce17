"""Run the ingest service: python -m services.ingest"""

from __future__ import annotations

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.shared.service import serve


def main() -> None:
    settings = IngestSettings()
    serve("ingest", settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
