"""Run the rooms service: python -m services.rooms"""

from __future__ import annotations

from services.rooms.app import create_app
from services.rooms.settings import RoomsSettings
from services.shared.service import serve


def main() -> None:
    settings = RoomsSettings()
    # Frames above this size close the socket (1009) before we read them.
    ws_max = max(settings.rooms_max_frame_bytes * 8, 65536)
    serve("rooms", settings, lambda: create_app(settings), ws_max_size=ws_max)


if __name__ == "__main__":
    main()
