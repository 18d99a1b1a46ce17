"""Every route of the review app, included routers opened up (FastAPI keeps an included router
whole; its effective routes carry the include's dependencies)."""

from __future__ import annotations

from typing import Any

from services.review.app import create_app
from services.review.settings import ReviewSettings


def console_routes() -> list[Any]:
    def walk(routes: list[Any]) -> list[Any]:
        found: list[Any] = []
        for route in routes:
            if hasattr(route, "effective_candidates"):
                found += walk(route.effective_candidates())
            elif hasattr(route, "original_router"):
                found += walk(route.original_router.routes)
            else:
                found.append(route)
        return found

    return walk(list(create_app(ReviewSettings()).routes))
