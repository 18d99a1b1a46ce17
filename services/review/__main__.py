"""Run the review service: python -m services.review"""

from __future__ import annotations

from services.review.app import create_app
from services.review.settings import ReviewSettings
from services.shared.service import serve


def main() -> None:
    settings = ReviewSettings()
    serve("review", settings, lambda: create_app(settings))


if __name__ == "__main__":
    main()
