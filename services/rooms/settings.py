"""Rooms settings (environment variables CHATPIC_ROOMS_*)."""

from __future__ import annotations

from services.shared.settings import HttpServiceSettings


class RoomsSettings(HttpServiceSettings):
    port: int = 8100
    # A room's lifetime is chosen at creation within these bounds (seconds).
    rooms_min_lifetime_s: int = 600
    rooms_max_lifetime_s: int = 24 * 3600
    # A room with no message for this long ends (every message pushes the deadline).
    rooms_idle_ttl_s: int = 1800
    # New joiners get the visible messages of this window, at most rooms_replay_max of them.
    rooms_replay_window_s: int = 600
    rooms_replay_max: int = 50
    # Longest text message, in characters.
    rooms_max_text: int = 500
    # Largest client frame accepted, in bytes (bigger ones are refused with an error frame).
    rooms_max_frame_bytes: int = 8192
    # Rate limit per client: this many points per window; each action costs its points.
    rooms_rate_limit: int = 120
    rooms_rate_window_s: int = 60
    rooms_join_cost: int = 5
    rooms_message_cost: int = 1
    rooms_image_cost: int = 10
    rooms_create_cost: int = 20
    rooms_report_cost: int = 5
    # How long a kicked client may not rejoin the room.
    rooms_kick_ban_s: int = 600
    # How often the sweeper ends rooms, deletes their contents and settles stuck scans.
    rooms_sweep_interval_s: float = 5.0
    # Room documents (and unhandled room reports) linger this long after the room ends.
    rooms_record_retention_s: int = 3600
    rooms_report_retention_s: int = 7 * 24 * 3600
    # Distinct reporters of a room image that hide it pending review (0 = never).
    rooms_auto_hide_reporters: int = 3
    # Each process re-reads its live rooms from MongoDB this often (mutes, closes, removals
    # the broker may have lost) and refreshes its members' liveness.
    rooms_refresh_s: float = 2.0
    # A nickname held by a connection not seen for this long may be taken by a new join.
    rooms_member_stale_s: int = 60
    # Frames queued for one slow connection before it is dropped.
    rooms_send_queue: int = 256
    # Image messages are served with this browser cache lifetime (private).
    rooms_image_max_age_s: int = 60
    # Public rooms listed at most.
    rooms_list_max: int = 50
    # Identifies this process on the relay topic; empty = random per start.
    rooms_instance_id: str = ""
