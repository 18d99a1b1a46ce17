"""What happens to an accepted upload: store it and remember it is pending (the outbox), then
the relay announces it on Kafka. The request never waits for the broker, so uploads stay fast
and are never lost while the broker is down.

Plain functions over ports (repositories, blob store, publisher): no HTTP here."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.ingest.intake import SanitizedImage
from services.ingest.metrics import PUBLISHES
from services.shared.events import IMAGE_UPLOADED, ImageUploaded, make_envelope
from services.shared.kafka import Publisher, PublishError
from services.shared.mongo import BlobStore
from services.shared.repos import ImageRepo
from services.shared.status import ImageStatus
from services.shared.tokens import new_id, new_token, token_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    image_id: str
    owner_token: str


def accept_upload(
    image: SanitizedImage,
    *,
    images: ImageRepo,
    blobs: BlobStore,
    salt: bytes,
    trace_id: str = "",
) -> Accepted:
    """Store the bytes and a pending image document; the relay publishes it."""
    image_id = new_id()
    owner_token = new_token()
    blob_id = blobs.put(image.data, image.content_type)
    thumb_id = blobs.put(image.thumbnail, image.thumbnail_content_type)
    images.insert_pending(
        {
            "_id": image_id,
            "blob_id": blob_id,
            "thumb_blob_id": thumb_id,
            "thumb_content_type": image.thumbnail_content_type,
            "content_type": image.content_type,
            "format": image.format,
            "source_format": image.source_format,
            "size": len(image.data),
            "width": image.width,
            "height": image.height,
            "animated": image.animated,
            "frames": image.frames,
            "owner_token_hash": token_hash(salt, owner_token),
            "trace_id": trace_id,
        }
    )
    return Accepted(image_id=image_id, owner_token=owner_token)


def publish_uploaded(
    image_id: str,
    content_type: str,
    size: int,
    *,
    images: ImageRepo,
    publisher: Publisher,
    trace_id: str = "",
) -> bool:
    payload = ImageUploaded(image_id=image_id, content_type=content_type, size=size)
    env = make_envelope(IMAGE_UPLOADED, image_id, payload, trace_id)
    try:
        publisher.publish(IMAGE_UPLOADED.topic, env)
    except PublishError as exc:
        PUBLISHES.labels("failed").inc()
        images.mark_publish_failed(image_id)
        log.warning(
            "publish failed; image stays pending", extra={"image_id": image_id, "err": str(exc)}
        )
        return False
    PUBLISHES.labels("ok").inc()
    images.mark_published(image_id)
    return True


def relay_pending(
    *,
    images: ImageRepo,
    publisher: Publisher,
    older_than_s: float,
    max_attempts: int,
    retry_after_s: float = 5.0,
    limit: int = 100,
) -> int:
    """One pass of the outbox relay: publish new uploads, retry refused publishes, re-announce
    images whose record may have been lost. Returns how many records went out.

    Only acknowledged publishes count toward ``max_attempts`` (an image the scanner keeps
    failing on goes to a human); a broker outage, however long, sends nobody to review."""
    sent = 0
    for doc in images.due_for_publish(older_than_s, retry_after_s, limit):
        if doc.get("publish", {}).get("attempts", 0) >= max_attempts:
            images.record_verdict(
                doc["_id"],
                ImageStatus.REVIEW,
                {"reasons": ["scan_unavailable"], "source": "ingest.republisher"},
            )
            log.error(
                "no verdict after many publishes; held for review", extra={"image_id": doc["_id"]}
            )
            continue
        if not images.claim_for_publish(doc["_id"], doc.get("publish", {}).get("last_at")):
            continue  # another ingest process is publishing it
        if publish_uploaded(
            doc["_id"],
            doc["content_type"],
            doc["size"],
            images=images,
            publisher=publisher,
            trace_id=doc.get("trace_id", ""),
        ):
            sent += 1
        else:
            break  # broker is down: try again next tick rather than hammering it
    return sent
