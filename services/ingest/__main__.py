"""Run the ingest service: python -m services.ingest"""

from __future__ import annotations

import uvicorn

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.shared.logs import configure_logging


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
