"""Run the review service: python -m services.review"""

from __future__ import annotations

import uvicorn

from services.review.app import create_app
from services.review.settings import ReviewSettings
from services.shared.logs import configure_logging


def main() -> None:
    settings = ReviewSettings()
    configure_logging("review", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
