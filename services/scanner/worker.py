"""The scan of one image: load, hash, match, score, decide, store, announce. No Kafka here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from gridfs.errors import NoFile

from services.scanner import metrics
from services.scanner.banks import BankMatcher
from services.scanner.evidence import quarantine
from services.scanner.hashing import image_signals
from services.scanner.imaging import frames_for_scan
from services.scanner.model import ModelCard, NsfwModel, nsfw_score
from services.scanner.policy import Decision, PolicyThresholds, decide_labels, label_verdict
from services.shared.events import (
    IMAGE_SCANNED,
    Envelope,
    ImageScanned,
    ImageUploaded,
    make_envelope,
)
from services.shared.kafka import Publisher
from services.shared.mongo import BlobStore
from services.shared.repos import BankRepo, ImageRepo
from services.shared.status import ImageStatus, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    image_id: str
    verdict: str | None  # None: nothing stored (unknown image or already decided)
    stored: bool


class ScanWorker:
    def __init__(
        self,
        *,
        images: ImageRepo,
        blobs: BlobStore,
        banks: BankRepo,
        model: NsfwModel,
        card: ModelCard,
        publisher: Publisher,
        thresholds: PolicyThresholds,
        max_frames: int,
        shadow: NsfwModel | None = None,
        vault: BlobStore | None = None,
        evidence_retention_days: float = 90.0,
        decode_size: int = 320,
    ) -> None:
        # JPEGs are decoded at the smallest DCT scale still >= decode_size on each side: the
        # model sees 320 px and the hashes are computed on small images anyway.
        self.decode_size = decode_size
        self.images = images
        self.blobs = blobs
        self.vault = vault
        self.evidence_retention_days = evidence_retention_days
        self.index = BankMatcher(banks)
        self.model = model
        self.card = card  # the live card: its per-label thresholds decide
        self.publisher = publisher
        self.thresholds = thresholds  # hash_max_distance (review/blocked are the card's)
        self.max_frames = max_frames
        self.shadow = shadow  # scored and recorded beside the live model; never decides

    def handle(self, env: Envelope[ImageUploaded]) -> Outcome:
        image_id = env.payload.image_id
        doc = self.images.get(image_id)
        if doc is None:
            log.warning("record for an unknown image; skipped", extra={"image_id": image_id})
            return Outcome(image_id, None, False)
        if doc["status"] != ImageStatus.PENDING.value:
            metrics.DUPLICATES.inc()
            self._quarantine(doc)  # finishes a move a crash interrupted
            self._announce(image_id, str(doc["status"]), doc.get("verdict", {}), env.trace_id)
            return Outcome(image_id, str(doc["status"]), False)
        try:
            data = self.blobs.get(doc["blob_id"])
        except NoFile:
            # The owner deleted a pending upload and the sweeper took its bytes: nothing to
            # scan, nothing will ever be shown. Anything else without bytes is an error.
            current = self.images.get(image_id) or {}
            if current.get("status") == ImageStatus.PENDING.value:
                raise
            log.info("bytes gone before the scan; skipped", extra={"image_id": image_id})
            return Outcome(image_id, str(current.get("status")), False)
        decision, record = self.scan(data)
        status = ImageStatus(decision.verdict.value)
        stored = self.images.record_verdict(image_id, status, record)
        if stored:
            metrics.SCANNED.labels(decision.verdict.value).inc()
            if record.get("shadow", {}).get("disagrees"):
                metrics.SHADOW_DISAGREEMENTS.inc()
            log.info(
                "verdict stored",
                extra={"image_id": image_id, "verdict": status.value, "trace_id": env.trace_id},
            )
        else:
            metrics.DUPLICATES.inc()
        final = self.images.get(image_id) or {}
        self._quarantine(final)
        self._announce(image_id, str(final.get("status")), final.get("verdict", {}), env.trace_id)
        return Outcome(image_id, str(final.get("status")), stored)

    def scan(self, data: bytes) -> tuple[Decision, dict[str, Any]]:
        """Pure scan of bytes: returns the decision and the verdict record to store."""
        t0 = time.perf_counter()
        try:
            frames = frames_for_scan(data, max_frames=self.max_frames, draft_size=self.decode_size)
        except ValueError as exc:
            # Fail closed: what we cannot read goes to a human, never to viewers.
            decision = Decision(Verdict.REVIEW, ("undecodable",))
            return decision, {"reasons": list(decision.reasons), "error": str(exc)[:200]}
        t1 = time.perf_counter()
        first = frames[0]
        signals = image_signals(first)
        hashable = signals.hashable
        self.index.refresh()
        found = self.index.match(signals)
        signal, match = found if found is not None else ("", None)
        t2 = time.perf_counter()
        scores = self.model.score_frames(frames)
        nsfw = nsfw_score(scores, self.card)
        t3 = time.perf_counter()
        # The matcher already applied each bank's own threshold for that signal type.
        vetted = match.distance if match is not None else self.thresholds.hash_max_distance
        decision = decide_labels(scores, self.card.thresholds, match, hashable, vetted)
        metrics.SCAN_SECONDS.labels("decode").observe(t1 - t0)
        metrics.SCAN_SECONDS.labels("hash").observe(t2 - t1)
        metrics.SCAN_SECONDS.labels("model").observe(t3 - t2)
        metrics.SCAN_SECONDS.labels("total").observe(t3 - t0)
        metrics.MODEL_SCORE.observe(nsfw if nsfw == nsfw else 1.0)
        if match is not None:
            metrics.BANK_MATCHES.labels(match.bank).inc()
        record: dict[str, Any] = {
            "verdict": decision.verdict.value,
            "reasons": list(decision.reasons),
            "model": {"name": self.card.name, "version": self.model.version},
            "scores": {k: round(v, 4) for k, v in scores.items()},
            "nsfw_score": round(nsfw, 4),
            "thresholds": {
                "labels": self.card.thresholds_record(),
                "hash_max_distance": self.thresholds.hash_max_distance,
            },
            "hashes": {
                "phash": signals.phash,
                "dhash": signals.dhash,
                "pdq": signals.pdq,
                "pdq_quality": signals.pdq_quality,
                "hashable": hashable,
            },
            "match": None
            if match is None
            else {
                "entry_id": match.entry_id,
                "signal": signal,
                "bank": match.bank,
                "distance": match.distance,
                "reason": match.reason,
            },
            "frames": len(frames),
            "timings_ms": {
                "decode": round((t1 - t0) * 1000, 2),
                "hash": round((t2 - t1) * 1000, 2),
                "model": round((t3 - t2) * 1000, 2),
            },
        }
        if self.shadow is not None:
            # Model-only verdicts are compared, so a hash match cannot hide a disagreement.
            live_verdict, _ = label_verdict(scores, self.card.thresholds)
            shadow_card = self.shadow.card
            shadow: dict[str, Any] = {
                "model": shadow_card.name,
                "version": self.shadow.version,
                "live_verdict": live_verdict.value,
            }
            t4 = time.perf_counter()
            try:
                shadow_scores = self.shadow.score_frames(frames)
            except Exception as exc:  # a broken shadow model must never affect the live verdict
                log.exception("shadow model failed", extra={"model": shadow_card.name})
                shadow.update(verdict=None, error=str(exc)[:200], disagrees=False)
            else:
                shadow_verdict, shadow_reasons = label_verdict(
                    shadow_scores, shadow_card.thresholds
                )
                shadow.update(
                    verdict=shadow_verdict.value,
                    reasons=shadow_reasons,
                    scores={k: round(v, 4) for k, v in shadow_scores.items()},
                    thresholds=shadow_card.thresholds_record(),
                    disagrees=shadow_verdict is not live_verdict,
                )
            shadow["timing_ms"] = round((time.perf_counter() - t4) * 1000, 2)
            record["shadow"] = shadow
        return decision, record

    def _quarantine(self, doc: dict[str, Any]) -> None:
        if self.vault is None or doc.get("status") != ImageStatus.BLOCKED.value:
            return
        if quarantine(
            doc,
            images=self.images,
            blobs=self.blobs,
            vault=self.vault,
            retention_days=self.evidence_retention_days,
        ):
            metrics.QUARANTINED.inc()

    def _announce(self, image_id: str, status: str, verdict: dict[str, Any], trace_id: str) -> None:
        payload = ImageScanned(
            image_id=image_id, verdict=status, reasons=list(verdict.get("reasons", []))
        )
        self.publisher.publish(
            IMAGE_SCANNED.topic, make_envelope(IMAGE_SCANNED, image_id, payload, trace_id)
        )
