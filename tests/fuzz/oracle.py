"""What a correct answer to one hostile input is: ``judge`` runs the intake and says what it did.

The intake must either refuse with its own error (an ``IntakeError``: 4xx status, a code, a
message, a JSON-serialisable body - what the HTTP layer sends) or return a clean re-encode:
one of our three formats, decoding to the size it claims, within the long-edge cap, no metadata
carrier in the bytes or the thumbnail (``metadata_found`` of the corpus-manifest tests), never the
uploaded bytes, and none of the polyglot payload markers the upload carried (HTML, script, ZIP,
PDF, PHP). Anything else is a finding:

- ``crash``: an exception other than IntakeError escaped (the HTTP layer would answer 500);
- ``problems`` on an accepted output (bad output) or on a refusal: a non-4xx status, a body the
  API could not serialise, or a *masked bug* - the intake maps every exception of a decoder to
  ``corrupt_image`` (right for Pillow's errors), which would also hide a TypeError/IndexError...
  raised by our own code; a refusal caused by such an error raised in ``services/`` is reported.

Hangs and memory are not judged here but by the process that runs this (``guard``).
"""

from __future__ import annotations

import io
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from services.ingest.intake import IntakeLimits, SanitizedImage, sanitize
from services.ingest.intake_pixels import THUMBNAIL_EDGE
from services.shared.errors import IntakeError
from tests.unit.test_corpus_manifest import metadata_found

LIMITS = IntakeLimits()
# Payload markers of the polyglots we build (compared lower-cased). One that the upload carried
# must not be in what we store. (Markers the upload did not carry are not looked for: 4 random
# bytes such as PK\x03\x04 turn up by chance in ~1 of 40,000 100-KB outputs.)
NEEDLES = (b"<html", b"<script", b"<svg", b"pk\x03\x04", b"%pdf-", b"<?php", b"alert(")
PROGRAMMING_ERRORS = (
    TypeError,
    AttributeError,
    NameError,
    IndexError,
    KeyError,
    ZeroDivisionError,
    AssertionError,
    RecursionError,
    UnboundLocalError,
)
_OUR_CODE = str(Path(__file__).resolve().parents[2] / "services")
_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


@dataclass(frozen=True)
class Verdict:
    kind: str  # "accepted" | "refused" | "crash"
    seconds: float  # in sanitize() only
    code: str = ""  # refusals: the error code
    status: int = 0
    fmt: str = ""  # accepted: the output format
    cause: str = ""  # refusals: the type of the exception that was mapped to the code
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.kind in ("accepted", "refused") and not self.problems

    def describe(self) -> str:
        what = self.code or self.fmt
        return f"{self.kind} {what} ({self.cause})" + "".join(f"\n  - {p}" for p in self.problems)


def judge(data: bytes, limits: IntakeLimits = LIMITS) -> Verdict:
    started = time.perf_counter()
    try:
        out = sanitize(data, limits)
    except IntakeError as exc:
        seconds = time.perf_counter() - started
        return Verdict(
            "refused",
            seconds,
            code=exc.code,
            status=exc.status,
            cause=_root_cause_name(exc),
            problems=tuple(_refusal_problems(exc)),
        )
    except Exception as exc:
        seconds = time.perf_counter() - started
        tail = "".join(traceback.format_exception(exc)[-6:])
        return Verdict("crash", seconds, cause=type(exc).__name__, problems=(tail,))
    seconds = time.perf_counter() - started
    return Verdict(
        "accepted", seconds, fmt=out.format, problems=tuple(output_problems(data, out, limits))
    )


def _root_cause_name(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(cause).__name__ if cause is not None else ""


def _refusal_problems(exc: IntakeError) -> list[str]:
    problems = []
    if not 400 <= exc.status < 500:
        problems.append(f"refusal with status {exc.status}")
    if not exc.code or not exc.message:
        problems.append(f"refusal without a code or a message: {exc.to_dict()!r}")
    try:
        json.dumps(exc.to_dict())
    except (TypeError, ValueError) as bad:
        problems.append(f"refusal body is not JSON: {bad}")
    masked = masked_bug(exc)
    if masked:
        problems.append(masked)
    return problems


def masked_bug(exc: IntakeError) -> str:
    """A programming error raised in services/ that the intake turned into a 4xx, or ''."""
    cause = exc.__cause__
    if not isinstance(cause, PROGRAMMING_ERRORS) or cause.__traceback__ is None:
        return ""
    frame = traceback.extract_tb(cause.__traceback__)[-1]
    if not frame.filename.startswith(_OUR_CODE):
        return ""
    where = f"{Path(frame.filename).name}:{frame.lineno}"
    return f"masked {type(cause).__name__} in our code at {where}: {cause}"


def output_problems(data: bytes, out: SanitizedImage, limits: IntakeLimits) -> list[str]:
    problems = []
    if out.format not in _FORMATS or out.content_type != f"image/{out.format}":
        problems.append(f"output format {out.format!r} / {out.content_type!r}")
    if out.thumbnail_content_type not in ("image/jpeg", "image/webp"):
        problems.append(f"thumbnail type {out.thumbnail_content_type!r}")
    if out.data == data:
        problems.append("the upload's own bytes came back")
    problems += _decode_problems(out, limits)
    for name, blob in (("output", out.data), ("thumbnail", out.thumbnail)):
        found = metadata_found(blob)
        if found:
            problems.append(f"metadata in the {name}: {found}")
        survivors = surviving_needles(data, blob)
        if survivors:
            problems.append(f"polyglot payload survived in the {name}: {survivors}")
    return problems


def surviving_needles(upload: bytes, stored: bytes) -> list[bytes]:
    upload, stored = upload.lower(), stored.lower()
    return [needle for needle in NEEDLES if needle in upload and needle in stored]


def _decode_problems(out: SanitizedImage, limits: IntakeLimits) -> list[str]:
    problems = []
    try:
        with Image.open(io.BytesIO(out.data), formats=[_FORMATS.get(out.format, "JPEG")]) as img:
            if img.size != (out.width, out.height) or max(img.size) > limits.max_long_edge:
                problems.append(f"output is {img.size}, claims {(out.width, out.height)}")
            frames = getattr(img, "n_frames", 1)
            if frames != out.frames:
                problems.append(f"output has {frames} frames, claims {out.frames}")
            img.load()
            if frames > 1:
                img.seek(frames - 1)
                img.load()
            if img.info.get("icc_profile") or img.getexif():
                problems.append("output carries an ICC profile or EXIF")
        with Image.open(io.BytesIO(out.thumbnail)) as thumb:
            thumb.load()
            if max(thumb.size) > THUMBNAIL_EDGE:
                problems.append(f"thumbnail is {thumb.size}")
    except Exception as exc:
        problems.append(f"output does not decode: {type(exc).__name__}: {exc}")
    return problems
