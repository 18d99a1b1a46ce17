"""Who is asking: a person who chose to reveal, or a machine that must never spend a view.

Link expanders (chat apps building a preview card), HEAD requests and browser prefetches get
no image bytes and count nothing (bug case C19)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Lower-case fragments of the User-Agent strings of known link expanders and crawlers.
# iMessage previews as "facebookexternalhit/1.1 Facebot Twitterbot/1.0".
EXPANDER_AGENTS: tuple[str, ...] = (
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "linkedinbot",
    "skypeuripreview",
    "mattermost-bot",
    "pinterest",
    "redditbot",
    "embedly",
    "iframely",
    "googlebot",
    "bingbot",
    "yandexbot",
    "duckduckbot",
    "applebot",
    "bot/",
    "crawler",
    "spider",
    "preview",
)


@dataclass(frozen=True)
class Viewer:
    """A person revealing a link: a salted key of their reduced address, and the password they
    typed, if any. The key is combined with the link id before it is stored."""

    key: str
    password: str | None = None


def is_link_expander(user_agent: str | None) -> bool:
    ua = (user_agent or "").lower()
    return any(fragment in ua for fragment in EXPANDER_AGENTS)


def is_prefetch(headers: Mapping[str, str]) -> bool:
    """Speculative loads: Sec-Purpose (Chromium), Purpose (older Chromium/Safari), X-Moz (Firefox),
    X-Purpose (Safari's preview)."""
    for name in ("sec-purpose", "purpose", "x-moz", "x-purpose"):
        value = headers.get(name, "").lower()
        if "prefetch" in value or "prerender" in value or "preview" in value:
            return True
    return False


def is_automated(user_agent: str | None, headers: Mapping[str, str]) -> bool:
    return is_link_expander(user_agent) or is_prefetch(headers)
