"""The console's own scripts (services/review/static), served behind the login like its pages."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"


def script(name: str) -> FileResponse:
    """A script of the console: revalidated on every load, never sniffed as something else."""
    return FileResponse(
        STATIC / name,
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
