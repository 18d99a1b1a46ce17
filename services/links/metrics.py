"""Links metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter

LINKS_CREATED = Counter("chatpic_links_created_total", "Share links created.")
LINK_REFUSED = Counter(
    "chatpic_links_create_refused_total", "Link creations refused, by code.", ["code"]
)
REVEALS = Counter(
    "chatpic_links_reveals_total",
    "Reveal attempts by outcome (granted or refusal code).",
    ["outcome"],
)
REPORTS = Counter("chatpic_links_reports_total", "User reports filed, by reason.", ["reason"])
BYTES_SERVED = Counter("chatpic_links_bytes_served_total", "Image bytes served to viewers.")
