"""Run the rooms service: python -m services.rooms"""

from __future__ import annotations

import uvicorn

from services.rooms.app import create_app
from services.rooms.settings import RoomsSettings
from services.shared.logs import configure_logging


def main() -> None:
    settings = RoomsSettings()
    configure_logging("rooms", settings.log_level)
    # Frames above this size close the socket (1009) before we read them.
    ws_max = max(settings.rooms_max_frame_bytes * 8, 65536)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_max_size=ws_max,
    )


if __name__ == "__main__":
    main()
