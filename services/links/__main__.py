"""Run the links service: python -m services.links"""

from __future__ import annotations

import uvicorn

from services.links.app import create_app
from services.links.settings import LinksSettings
from services.shared.logs import configure_logging


def main() -> None:
    settings = LinksSettings()
    configure_logging("links", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
