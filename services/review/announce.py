"""Best-effort events from the review side: `bank.changed` (a push so every scanner applies the
bank change feed at once), `image.takedown` (for anything that shows images live) and
`room.moderated` (rooms processes apply a moderator's move to live connections at once).
MongoDB stays the source of truth: if the broker is down, scanners still pick the change up on
their next poll, links already refuse the removed image from its status, and the rooms service
reads rooms and messages from MongoDB."""

from __future__ import annotations

import logging

from services.review import metrics
from services.shared.events import (
    BANK_CHANGED,
    IMAGE_TAKEN_DOWN,
    ROOM_MODERATED,
    BankChanged,
    ImageTakenDown,
    RoomModerated,
    make_envelope,
)
from services.shared.kafka import Publisher, PublishError

log = logging.getLogger(__name__)


def bank_changed(publisher: Publisher, bank: str, action: str, entries: int) -> bool:
    payload = BankChanged(bank=bank, action=action, entries=entries)
    try:
        publisher.publish(BANK_CHANGED.topic, make_envelope(BANK_CHANGED, bank or "*", payload))
    except PublishError as exc:
        log.warning("bank.changed not published; scanners poll", extra={"err": str(exc)})
        return False
    return True


def taken_down(publisher: Publisher, image_ids: list[str], reason: str) -> int:
    sent = 0
    for image_id in image_ids:
        payload = ImageTakenDown(image_id=image_id, reason=reason)
        try:
            publisher.publish(
                IMAGE_TAKEN_DOWN.topic, make_envelope(IMAGE_TAKEN_DOWN, image_id, payload)
            )
            sent += 1
        except PublishError as exc:
            log.warning("image.takedown not published", extra={"err": str(exc)})
            break
    return sent


def room_moderated(publisher: Publisher, payload: RoomModerated) -> bool:
    """Tell the rooms processes (key: the room, so one room's events stay in order). A failure
    is logged and counted; the decision already stands in MongoDB."""
    try:
        publisher.publish(
            ROOM_MODERATED.topic, make_envelope(ROOM_MODERATED, payload.room_id, payload)
        )
    except PublishError as exc:
        metrics.UNPUBLISHED.labels(ROOM_MODERATED.name).inc()
        log.warning(
            "room.moderated not published; the rooms service reads MongoDB",
            extra={"err": str(exc), "room_id": payload.room_id, "action": payload.action},
        )
        return False
    return True
