"""Links metrics, declared once. Labels are low-cardinality codes, never ids or tokens."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LINKS_CREATED = Counter(
    "chatpic_links_created_total", "Share links created, by kind.", ["kind"]
)  # kind: plain, per_viewer, session, password (a link may count under several)
LINK_REFUSED = Counter(
    "chatpic_links_create_refused_total", "Link creations refused, by code.", ["code"]
)
REVEALS = Counter(
    "chatpic_links_reveals_total",
    "Reveal attempts by outcome (granted or refusal code).",
    ["outcome"],
)
TICKETS = Counter(
    "chatpic_links_tickets_total",
    "Image fetches with a reveal ticket, by outcome (served or refusal code).",
    ["outcome"],
)
AUTOMATED = Counter(
    "chatpic_links_automated_requests_total",
    "Requests from link expanders and prefetches, answered without bytes or counting.",
    ["route"],
)
REPORTS = Counter("chatpic_links_reports_total", "User reports filed, by reason.", ["reason"])
APPEALS = Counter("chatpic_links_appeals_total", "Appeals of removals filed by uploaders.")
AUTO_HIDES = Counter(
    "chatpic_links_auto_hides_total",
    "Images hidden pending review because enough distinct people reported them.",
)
BYTES_SERVED = Counter("chatpic_links_bytes_served_total", "Image bytes served to viewers.")
OWNER_ACTIONS = Counter(
    "chatpic_links_owner_actions_total",
    "Owner actions, by action and outcome.",
    ["action", "outcome"],
)
HEARTBEATS = Counter(
    "chatpic_links_session_heartbeats_total",
    "End-of-session heartbeats, by outcome (alive or refusal code).",
    ["outcome"],
)
SESSIONS_OPEN = Gauge(
    "chatpic_links_session_sockets", "Uploader pages holding an end-of-session WebSocket open."
)
SWEEPER_DELETIONS = Counter(
    "chatpic_links_sweeper_deletions_total",
    "Images whose bytes the sweeper deleted, by reason (links_ended, unlinked, deleted).",
    ["reason"],
)
SWEEPER_ERRORS = Counter("chatpic_links_sweeper_errors_total", "Sweeper passes that failed.")
KILLED_BY_TAKEDOWN = Counter(
    "chatpic_links_killed_by_takedown_total",
    "Links ended because their image was removed (image.takedown, or the sweeper's reconcile).",
)
TAKEDOWN_DEAD_LETTERS = Counter(
    "chatpic_links_takedown_dead_letters_total",
    "image.takedown records sent to the dead-letter topic, by reason.",
    ["reason"],
)
GALLERY_PAGES = Counter(
    "chatpic_links_gallery_pages_total",
    "Gallery listings served, by kind (html, api) and scope (all, category).",
    ["kind", "scope"],
)  # scope is "all" or "category", never the category name nor a cursor
GALLERY_THUMBNAILS = Counter(
    "chatpic_links_gallery_thumbnails_total",
    "Gallery thumbnail requests, by outcome (served or refusal code).",
    ["outcome"],
)
GALLERY_REPORTS = Counter(
    "chatpic_links_gallery_reports_total", "Reports filed from the gallery, by reason.", ["reason"]
)
