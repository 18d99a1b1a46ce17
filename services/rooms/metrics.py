"""The rooms service's own metrics (HTTP RED metrics come from services.shared.metrics).
Labels are low-cardinality: kinds, outcomes and codes, never rooms, nicknames or addresses."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROOMS_LIVE = Gauge("chatpic_rooms_live", "Rooms with at least one connection in this process.")
CONNECTIONS = Gauge("chatpic_rooms_connections", "Joined WebSocket connections in this process.")
ROOMS_CREATED = Counter(
    "chatpic_rooms_created_total", "Rooms created, by visibility.", ["visibility"]
)
ROOMS_ENDED = Counter(
    "chatpic_rooms_ended_total", "Rooms ended by the sweeper or an owner, by reason.", ["reason"]
)
MESSAGES = Counter(
    "chatpic_rooms_messages_total", "Messages accepted, by kind (text, image).", ["kind"]
)
REFUSED = Counter(
    "chatpic_rooms_frames_refused_total", "Client frames answered with an error, by code.", ["code"]
)
RATE_LIMITED = Counter(
    "chatpic_rooms_rate_limited_total", "Actions refused by the rate limit, by action.", ["action"]
)
FRAMES_DELIVERED = Counter(
    "chatpic_rooms_frames_delivered_total",
    "Frames written to sockets, by origin (local, relay).",
    ["origin"],
)
DELIVERY_LATENCY = Histogram(
    "chatpic_rooms_delivery_seconds",
    "From a frame's broadcast in this process to its write on a socket.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SLOW_DROPPED = Counter(
    "chatpic_rooms_slow_connections_dropped_total",
    "Connections closed because they did not read their frames.",
)
RELAY_PUBLISHED = Counter("chatpic_rooms_relay_published_total", "Frames published to the relay.")
RELAY_FAILURES = Counter(
    "chatpic_rooms_relay_publish_failures_total",
    "Frames not relayed to other processes, by reason (broker, queue_full).",
    ["reason"],
)
RELAY_RECEIVED = Counter(
    "chatpic_rooms_relay_received_total", "Relayed frames from other processes delivered here."
)
IMAGES_SETTLED = Counter(
    "chatpic_rooms_images_settled_total",
    "Image messages settled, by outcome (visible, refused) and path (event, post, reconcile).",
    ["outcome", "path"],
)
IMAGES_SERVED = Counter(
    "chatpic_rooms_images_served_total",
    "Image and thumbnail requests, by outcome (served or refusal code).",
    ["outcome"],
)
MODERATION = Counter(
    "chatpic_rooms_moderation_total",
    "Moderation applied to live rooms, by action and source.",
    ["action", "source"],
)
REPORTS = Counter("chatpic_rooms_reports_total", "Messages reported, by kind.", ["kind"])
AUTO_HIDES = Counter(
    "chatpic_rooms_auto_hides_total",
    "Room photos held for review at once because enough distinct people reported them.",
)
SWEEP_ERRORS = Counter("chatpic_rooms_sweep_errors_total", "Sweeper passes that failed.")
CONSUMER_ERRORS = Counter(
    "chatpic_rooms_consumer_errors_total", "Event handling failures, by consumer.", ["consumer"]
)
