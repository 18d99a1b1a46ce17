"""PDQ and the signal-type registry, bank CSV parsing and per-bank settings (in memory), and the
bank robustness facts measured by bench/bank_robustness.py."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from PIL import Image

from bench.bank_robustness import BANNED, Report, measure
from services.review import csvcells, domain
from services.scanner.hashing import (
    DEFAULT_THRESHOLDS,
    PDQ_MIN_QUALITY,
    SIGNAL_TYPES,
    BankEntry,
    WideHashIndex,
    hamming,
    image_signals,
    normalize_hash,
    pdq_hex,
)
from services.scanner.imaging import load_normalized
from services.shared.errors import DomainError
from services.shared.repos import BankRepo
from tests.unit.corpus import corpus_bytes

PDQ_A = "564e785eb0c31ac72b4b8e94d0e68dc3dfb04b4975cfd1eb8759a31c038d806d"
PHASH_A = "cedbd88c49eaf808"


def _copy(name: str, factor: float, quality: int) -> Image.Image:
    with Image.open(io.BytesIO(corpus_bytes(name))) as src:
        rgb = src.convert("RGB")
    small = rgb.resize((round(rgb.width * factor), round(rgb.height * factor)))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=quality)
    return load_normalized(out.getvalue())


# --- PDQ and the registry --------------------------------------------------------------------


def test_pdq_format_and_quality() -> None:
    img = load_normalized(corpus_bytes("DSCN0010.jpg"))
    digest, quality = pdq_hex(img)
    assert len(digest) == 64 and digest == digest.lower()
    int(digest, 16)
    assert quality >= PDQ_MIN_QUALITY
    assert pdq_hex(img) == (digest, quality)  # deterministic
    assert pdq_hex(img.convert("L"))[0] == pdq_hex(img.convert("L").convert("RGB"))[0]


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "Landscape_1.jpg", "xmp_test.jpg"])
def test_pdq_of_a_resized_recompressed_copy_is_near(name: str) -> None:
    original, _ = pdq_hex(load_normalized(corpus_bytes(name)))
    copy, quality = pdq_hex(_copy(name, 0.6, 55))
    assert quality >= PDQ_MIN_QUALITY
    assert hamming(original, copy) <= DEFAULT_THRESHOLDS["pdq"]


def test_pdq_of_different_photos_is_far() -> None:
    names = ("DSCN0010.jpg", "DSCN0021.jpg", "Landscape_1.jpg", "iptc.jpg", "xmp_test.jpg")
    hashes = [pdq_hex(load_normalized(corpus_bytes(n)))[0] for n in names]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert hamming(a, b) > 3 * DEFAULT_THRESHOLDS["pdq"]


def test_flat_image_has_low_pdq_quality() -> None:
    _, quality = pdq_hex(Image.new("RGB", (400, 300), (40, 90, 160)))
    assert quality < PDQ_MIN_QUALITY
    signals = image_signals(Image.new("RGB", (400, 300), (40, 90, 160)))
    assert not signals.hashable and signals.pdq_quality < PDQ_MIN_QUALITY


def test_large_inputs_are_reduced_with_few_bits_changed() -> None:
    img = load_normalized(corpus_bytes("Landscape_1.jpg"), draft_size=4000)  # full 1800x1200
    assert max(img.size) > 1024
    reduced = load_normalized(corpus_bytes("Landscape_1.jpg"))
    assert hamming(pdq_hex(img)[0], pdq_hex(reduced)[0]) <= 10


def test_image_signals_bundle_every_type() -> None:
    img = load_normalized(corpus_bytes("DSCN0010.jpg"))
    signals = image_signals(img)
    assert signals.hashable
    for name, st in SIGNAL_TYPES.items():
        assert len(signals.get(name)) == st.hex_len
    with pytest.raises(ValueError):
        signals.get("md5")


def test_hamming_any_length() -> None:
    assert hamming("0" * 64, "f" * 64) == 256
    assert hamming(PDQ_A, PDQ_A) == 0
    assert hamming("0" * 16, "f" * 16) == 64
    for a, b in (("0" * 64, "0" * 16), ("g" * 64, "0" * 64), (" " + "0" * 15, "0" * 16)):
        with pytest.raises(ValueError):
            hamming(a, b)


def test_registry_defaults_and_review_mirror() -> None:
    assert {n: st.bits for n, st in SIGNAL_TYPES.items()} == {"phash": 64, "dhash": 64, "pdq": 256}
    assert dict(DEFAULT_THRESHOLDS) == {"phash": 8, "dhash": 8, "pdq": 31}
    assert PDQ_MIN_QUALITY == domain.PDQ_MIN_QUALITY == 50
    # review validates with the same shared registry the scanner matches with.
    for name, st in SIGNAL_TYPES.items():
        mirror = domain.SIGNALS[name]
        assert (mirror.hex_len, mirror.default_threshold, mirror.max_threshold) == (
            st.hex_len,
            st.default_threshold,
            st.max_threshold,
        )
    assert set(domain.SIGNALS) == set(SIGNAL_TYPES)


def test_normalize_hash() -> None:
    assert normalize_hash("pdq", f" {PDQ_A.upper()} ") == PDQ_A
    assert normalize_hash("dhash", PHASH_A) == PHASH_A
    for signal, value in (
        ("pdq", PHASH_A),
        ("phash", PDQ_A),
        ("md5", PHASH_A),
        ("phash", "x" * 16),
    ):
        with pytest.raises(ValueError):
            normalize_hash(signal, value)


def test_wide_index() -> None:
    far = "f" * 64
    near = f"{int(PDQ_A, 16) ^ 0b111:064x}"  # 3 bits away
    index = WideHashIndex([BankEntry("a", "b", far, "far"), BankEntry("p", "b", PDQ_A, "r")])
    assert len(index) == 2
    hit = index.nearest(near, max_distance=31)
    assert hit is not None and (hit.entry_id, hit.distance) == ("p", 3)
    assert index.nearest(near, max_distance=2) is None
    assert WideHashIndex([]).nearest(PDQ_A, 256) is None
    with pytest.raises(ValueError):
        WideHashIndex([BankEntry("x", "b", PHASH_A, "64-bit")])
    with pytest.raises(ValueError):
        index.nearest(PHASH_A, 8)


# --- CSV -------------------------------------------------------------------------------------


def _errors(data: bytes, bank: str = "bank-a") -> DomainError:
    with pytest.raises(DomainError) as info:
        domain.parse_bank_csv(data, bank)
    return info.value


def test_csv_parses_with_or_without_header() -> None:
    body = f'phash,{PHASH_A.upper()},bank-a,"a, b"\r\npdq, {PDQ_A} ,,x\n'
    for data in (body.encode(), ("\ufeffsignal_type,hash,bank,reason\n" + body).encode()):
        rows = domain.parse_bank_csv(data, "bank-a")
        assert [(r.signal_type, r.hash, r.reason) for r in rows] == [
            ("phash", PHASH_A, "a, b"),
            ("pdq", PDQ_A, "x"),
        ]


def test_csv_errors_list_every_bad_line() -> None:
    data = (
        "signal_type,hash,bank,reason\n"
        f"phash,{PHASH_A},bank-a,ok\n"  # 2
        f"phash,{PHASH_A}0,bank-a,long\n"  # 3
        f'pdq,{PDQ_A},bank-a,"multi\nline"\n'  # 4-5, fine
        f"sha1,{PHASH_A},bank-a,what\n"  # 6
        f"dhash,{PHASH_A},bank-b,other bank\n"  # 7
        f"dhash,{PHASH_A},bank-a,{'r' * 501}\n"  # 8
        f"dhash,{PHASH_A},bank-a, \n"  # 9
        "just one cell\n"  # 10
    ).encode()
    err = _errors(data)
    assert (err.status, err.code) == (400, "invalid_csv")
    assert err.data["bad_lines"] == [3, 6, 7, 8, 9, 10]
    codes = [e["code"] for e in err.data["errors"]]
    assert codes == [
        "invalid_hash",
        "unsupported_signal_type",
        "wrong_bank",
        "reason_too_long",
        "missing_reason",
        "wrong_column_count",
    ]


def test_csv_whole_file_refusals() -> None:
    assert _errors(b"").code == "empty_csv"
    assert _errors(b"signal_type,hash,bank,reason\n\n").code == "empty_csv"
    assert _errors(b"phash,\xff\xfe,bank-a,x\n").code == "invalid_encoding"
    err = _errors(f'phash,{PHASH_A},bank-a,"open quote\n'.encode())
    assert err.code == "invalid_csv" and err.data["bad_lines"] == [1]
    assert err.data["errors"][0]["code"] == "malformed_csv"
    big = _errors(b"x" * (domain.IMPORT_MAX_BYTES + 1))
    assert (big.status, big.code) == (413, "too_large")
    many = (f"phash,{PHASH_A},bank-a,r\n" * (domain.IMPORT_MAX_ROWS + 1)).encode()
    assert _errors(many).code == "too_many_rows"
    assert _errors(b"phash,x,y,z\n", bank="Bad Bank").code == "invalid_bank"
    assert _errors(b"phash,x,y,z\n", bank="entries").code == "invalid_bank"


# --- per-bank settings, import and export over an in-memory repo -----------------------------


class MemoryBanks:
    """The BankRepo methods the domain uses, in memory."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.bumps = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.docs.append({**entry, "created_at": datetime.now(UTC)})
        self.bumps += 1

    def add_many(self, entries: list[dict[str, Any]]) -> None:
        t = datetime.now(UTC)
        self.docs.extend({**e, "created_at": t, "seq": i} for i, e in enumerate(entries))
        self.bumps += 1

    def entries_in(self, bank: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["bank"] == bank]

    def settings(self, bank: str) -> dict[str, Any] | None:
        return self.stored.get(bank)

    def put_settings(self, bank: str, values: dict[str, Any]) -> None:
        self.stored[bank] = {**values, "bank": bank}
        self.bumps += 1


def _repo(mem: MemoryBanks) -> BankRepo:
    return cast(BankRepo, mem)


def test_settings_defaults_update_and_validation() -> None:
    mem = MemoryBanks()
    got = domain.get_bank_settings(banks=_repo(mem), bank="bank-a")
    assert got.to_dict() == {
        "bank": "bank-a",
        "thresholds": {"phash": 8, "dhash": 8, "pdq": 31},
        "pdq_min_quality": 50,
    }
    domain.update_bank_settings(banks=_repo(mem), bank="bank-a", thresholds={"pdq": 20})
    domain.update_bank_settings(banks=_repo(mem), bank="bank-a", pdq_min_quality=80)
    got = domain.get_bank_settings(banks=_repo(mem), bank="bank-a")
    assert got.thresholds == {"phash": 8, "dhash": 8, "pdq": 20} and got.pdq_min_quality == 80
    assert domain.get_bank_settings(banks=_repo(mem), bank="bank-b").thresholds["pdq"] == 31

    bad: list[tuple[dict[str, Any], str]] = [
        ({"thresholds": {"phash": 17}}, "invalid_threshold"),
        ({"thresholds": {"dhash": -1}}, "invalid_threshold"),
        ({"thresholds": {"pdq": 65}}, "invalid_threshold"),
        ({"thresholds": {"pdq": True}}, "invalid_threshold"),
        ({"thresholds": {"pdq": 3.5}}, "invalid_threshold"),
        ({"thresholds": {"md5": 4}}, "unsupported_signal_type"),
        ({"pdq_min_quality": 101}, "invalid_quality"),
        ({"pdq_min_quality": -1}, "invalid_quality"),
        ({"pdq_min_quality": "50"}, "invalid_quality"),
    ]
    for kwargs, code in bad:
        with pytest.raises(DomainError) as info:
            domain.update_bank_settings(banks=_repo(mem), bank="bank-a", **kwargs)
        assert (info.value.status, info.value.code) == (400, code), kwargs
    assert domain.get_bank_settings(banks=_repo(mem), bank="bank-a") == got  # unchanged
    # the edges are allowed
    domain.update_bank_settings(
        banks=_repo(mem), bank="bank-a", thresholds={"phash": 0, "pdq": 64}, pdq_min_quality=0
    )
    with pytest.raises(DomainError):
        domain.get_bank_settings(banks=_repo(mem), bank="no spaces")


def test_import_counts_duplicates_and_export_round_trips() -> None:
    mem = MemoryBanks()
    text = (
        "signal_type,hash,bank,reason\n"
        f'pdq,{PDQ_A},bank-a,"quoted, reason"\n'
        f"phash,{PHASH_A},bank-a,first\n"
        f"phash,{PHASH_A},bank-a,repeated in the file\n"
    )
    result = domain.import_bank_csv(banks=_repo(mem), bank="bank-a", data=text.encode(), source="")
    assert result.to_dict() == {"bank": "bank-a", "rows": 3, "imported": 2, "duplicates": 1}
    assert {d["source"] for d in mem.docs} == {"csv-import"}
    exported = domain.export_bank_csv(banks=_repo(mem), bank="bank-a")
    assert exported == "\n".join(text.splitlines()[:3]) + "\n"
    again = domain.import_bank_csv(
        banks=_repo(mem), bank="bank-a", data=exported.encode(), source="s"
    )
    assert (again.imported, again.duplicates) == (0, 2)
    assert (
        domain.export_bank_csv(banks=_repo(mem), bank="bank-b") == "signal_type,hash,bank,reason\n"
    )


def test_export_disarms_formulas_and_the_import_reads_them_back() -> None:
    """The reason is free text: =, +, -, @ (and tab, CR) at its start get a leading ' in the
    export, as the audit export does (one helper); the import drops exactly that apostrophe, so
    a file moved to another bank keeps its hashes and reasons; an apostrophe before anything
    else stays part of the reason."""
    mem = MemoryBanks()
    reasons = ['=HYPERLINK("http://x")', "+1", "-2", "@cmd", "'kept", "'=already quoted"]
    hashes = [f"{i:016x}" for i in range(1, len(reasons) + 1)]
    for value, reason in zip(hashes, reasons, strict=True):
        domain.add_bank_entry(
            banks=_repo(mem),
            bank="bank-a",
            signal_type="phash",
            hash_value=value,
            reason=reason,
            source="t",
        )
    exported = domain.export_bank_csv(banks=_repo(mem), bank="bank-a")
    rows = list(csv.reader(io.StringIO(exported)))[1:]
    assert [r[1] for r in rows] == hashes
    assert [r[3] for r in rows] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@cmd",
        "'kept",
        "''=already quoted",
    ]
    assert [r[3] for r in rows] == [csvcells.spreadsheet_text(r) for r in reasons]
    moved = exported.replace(",bank-a,", ",bank-b,")
    result = domain.import_bank_csv(banks=_repo(mem), bank="bank-b", data=moved.encode(), source="")
    assert result.imported == len(reasons)
    assert [(d["hash"], d["reason"]) for d in mem.entries_in("bank-b")] == list(
        zip(hashes, reasons, strict=True)
    )
    assert domain.export_bank_csv(banks=_repo(mem), bank="bank-b") == moved


def test_add_entry_accepts_every_signal_type() -> None:
    mem = MemoryBanks()
    for signal, value in (("phash", PHASH_A), ("dhash", PHASH_A.upper()), ("pdq", PDQ_A)):
        domain.add_bank_entry(
            banks=_repo(mem),
            bank="bank-a",
            signal_type=signal,
            hash_value=value,
            reason="r",
            source="t",
        )
    assert [d["hash"] for d in mem.docs] == [PHASH_A, PHASH_A, PDQ_A]
    with pytest.raises(DomainError) as info:
        domain.add_bank_entry(
            banks=_repo(mem),
            bank="bank-a",
            signal_type="pdq",
            hash_value=PHASH_A,
            reason="r",
            source="t",
        )
    assert info.value.code == "invalid_hash"


# --- robustness (bench/bank_robustness.py) ----------------------------------------------------


@pytest.fixture(scope="module")
def robustness() -> Report:
    return measure()


def test_every_signal_catches_recompressed_resized_and_grayscale_copies(
    robustness: Report,
) -> None:
    n = len(BANNED)
    for transform in ("jpeg_q50", "resize_50", "grayscale"):
        for signal in ("phash", "dhash", "pdq"):
            assert robustness.caught_count(transform, signal) == n, (transform, signal)
    # a text watermark and a 2% border crop still fall within the 64-bit thresholds
    for transform in ("watermark", "crop_2pct"):
        assert robustness.caught_count(transform, "dhash") == n, transform
    assert robustness.caught_count("watermark", "phash") == n


def test_pdq_is_the_crop_sensitive_one(robustness: Report) -> None:
    # PDQ at 31 bits misses most 2%-cropped copies; known, and why pHash/dHash stay in use.
    assert robustness.caught_count("crop_2pct", "pdq") < len(BANNED)
    assert all(c.pdq_quality >= PDQ_MIN_QUALITY for c in robustness.copies)


def test_no_false_match_across_the_corpus(robustness: Report) -> None:
    assert robustness.compared >= 30
    assert robustness.false_matches == []
    for signal, threshold in DEFAULT_THRESHOLDS.items():
        assert robustness.min_unrelated[signal] > 2 * threshold, signal


def test_bench_is_quick(robustness: Report) -> None:
    assert robustness.seconds < 60
