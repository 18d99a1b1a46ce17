"""Server-rendered pages: one Jinja environment per service, autoescaped, no inline secrets."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from services.shared.reports import REASON_LABELS

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class Pages:
    def __init__(self, package: str) -> None:
        self.env = Environment(
            loader=PackageLoader(package, "templates"), autoescape=select_autoescape(["html"])
        )
        # Report forms on every service offer the same reasons, worded once.
        self.env.globals["report_reasons"] = [(r.value, text) for r, text in REASON_LABELS.items()]

    def render(
        self, name: str, status: int = 200, headers: dict[str, str] | None = None, **ctx: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
