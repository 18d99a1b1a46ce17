"""Best-effort events from the review side: `bank.changed` (a push so every scanner applies the
bank change feed at once) and `image.takedown` (for anything that shows images live). MongoDB
stays the source of truth: if the broker is down, scanners still pick the change up on their
next poll, and links already refuse the removed image from its status."""

from __future__ import annotations

import logging

from services.shared.events import (
    BANK_CHANGED,
    IMAGE_TAKEN_DOWN,
    BankChanged,
    ImageTakenDown,
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
