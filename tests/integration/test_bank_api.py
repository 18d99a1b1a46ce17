"""Hash banks on the real review service: CSV import/export, per-bank settings, refusals."""

from __future__ import annotations

import csv
import io
import uuid

from tests.live import Live

# Random values, checked to be ≥21 bits (64-bit) and ≥96 bits (PDQ) from every corpus image:
# the stack is shared by the whole session, so these banks must never block another test's upload.
PHASH = "202402d9e16b004a"
DHASH = "e545e4ef0b72567e"
PDQ = "5d1949bfe569c17f8b20c88415e94b564f302b5e456257924f6f01842cc39122"
HEADER = "signal_type,hash,bank,reason\n"


def fresh_bank() -> str:
    return f"it-{uuid.uuid4().hex[:12]}"


def sample_csv(bank: str) -> str:
    return (
        HEADER
        + f"phash,{PHASH},{bank},known photo\n"
        + f'dhash,{DHASH},{bank},"quoted, with a comma"\n'
        + f'pdq,{PDQ},{bank},"two\nlines"\n'
        + f"pdq,{'0f' * 32},{bank},industry list 42\n"
    )


def test_csv_import_then_export_gives_the_same_rows(live: Live) -> None:
    bank = fresh_bank()
    text = sample_csv(bank)
    resp = live.review.post(
        f"/api/v1/banks/{bank}/import",
        content=text.encode(),
        headers={"content-type": "text/csv"},
        params={"source": "it-test"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"bank": bank, "rows": 4, "imported": 4, "duplicates": 0}

    resp = live.review.get(f"/api/v1/banks/{bank}/export.csv")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.text == text  # same rows, same order, same quoting

    docs = list(live.db["bank_entries"].find({"bank": bank}))
    assert {d["source"] for d in docs} == {"it-test"}

    # Importing the same file again (as multipart this time) adds nothing new.
    resp = live.review.post(
        f"/api/v1/banks/{bank}/import", files={"file": ("bank.csv", text.encode(), "text/csv")}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"bank": bank, "rows": 4, "imported": 0, "duplicates": 4}
    assert live.review.get(f"/api/v1/banks/{bank}/export.csv").text == text

    counts = live.review.get(f"/api/v1/banks/{bank}").json()["entries"]
    assert counts == {"phash": 1, "dhash": 1, "pdq": 2}


def test_bad_csv_is_refused_whole_with_line_numbers(live: Live) -> None:
    bank = fresh_bank()
    text = (
        HEADER
        + f"phash,{PHASH},{bank},fine\n"  # line 2
        + f"phash,{PHASH[:-1]},{bank},short hash\n"  # line 3
        + "\n"  # line 4: blank, skipped
        + f"md5,{PHASH},{bank},unknown type\n"  # line 5
        + f"pdq,{PDQ},{bank}\n"  # line 6: three columns
        + f"dhash,{DHASH},other-bank,wrong bank\n"  # line 7
        + f"dhash,{DHASH},{bank},\n"  # line 8: no reason
        + f"pdq,{PDQ},{bank},fine too\n"  # line 9
    )
    resp = live.review.post(
        f"/api/v1/banks/{bank}/import", content=text, headers={"content-type": "text/csv"}
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "invalid_csv" and body["message"]
    assert body["bad_lines"] == [3, 5, 6, 7, 8]
    assert [e["code"] for e in body["errors"]] == [
        "invalid_hash",
        "unsupported_signal_type",
        "wrong_column_count",
        "wrong_bank",
        "missing_reason",
    ]
    assert live.db["bank_entries"].count_documents({"bank": bank}) == 0  # all or nothing

    for content, code in (
        (b"", "empty_csv"),
        (HEADER.encode(), "empty_csv"),
        (b"\xff\xfe" + b"x" * 10, "invalid_encoding"),
        (f'phash,{PHASH},{bank},"unterminated\n'.encode(), "invalid_csv"),
    ):
        resp = live.review.post(
            f"/api/v1/banks/{bank}/import", content=content, headers={"content-type": "text/csv"}
        )
        assert resp.status_code == 400, (content, resp.text)
        assert resp.json()["code"] == code

    too_big = (f"phash,{PHASH},{bank},{'x' * 400}\n" * 6000).encode()  # > 2 MiB
    resp = live.review.post(
        f"/api/v1/banks/{bank}/import", content=too_big, headers={"content-type": "text/csv"}
    )
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "too_large"

    resp = live.review.post(
        f"/api/v1/banks/{bank}/import", files={"other": ("x.csv", b"a", "text/csv")}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "missing_file"
    resp = live.review.post("/api/v1/banks/Bad Bank!/import", content=HEADER)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_bank"


def test_bank_settings_round_trip(live: Live) -> None:
    bank = fresh_bank()
    resp = live.review.get(f"/api/v1/banks/{bank}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "bank": bank,
        "thresholds": {"phash": 8, "dhash": 8, "pdq": 31},
        "pdq_min_quality": 50,
        "entries": {"phash": 0, "dhash": 0, "pdq": 0},
    }

    resp = live.review.put(f"/api/v1/banks/{bank}", json={"thresholds": {"pdq": 24, "phash": 6}})
    assert resp.status_code == 200, resp.text
    want = {"bank": bank, "thresholds": {"phash": 6, "dhash": 8, "pdq": 24}, "pdq_min_quality": 50}
    assert resp.json() == want
    resp = live.review.put(f"/api/v1/banks/{bank}", json={"pdq_min_quality": 70})
    assert resp.status_code == 200, resp.text
    want["pdq_min_quality"] = 70
    got = live.review.get(f"/api/v1/banks/{bank}").json()
    assert {k: got[k] for k in want} == want
    stored = live.db["bank_settings"].find_one({"_id": bank})
    assert stored["thresholds"] == want["thresholds"] and stored["pdq_min_quality"] == 70

    for body, status, code in (
        ({"thresholds": {"pdq": 65}}, 400, "invalid_threshold"),
        ({"thresholds": {"phash": -1}}, 400, "invalid_threshold"),
        ({"thresholds": {"md5": 3}}, 400, "unsupported_signal_type"),
        ({"thresholds": {"phash": "8"}}, 422, "invalid_request"),
        ({"pdq_min_quality": 101}, 400, "invalid_quality"),
        ({"colour": "blue"}, 422, "invalid_request"),
    ):
        resp = live.review.put(f"/api/v1/banks/{bank}", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["code"] == code
    got = live.review.get(f"/api/v1/banks/{bank}").json()
    assert {k: got[k] for k in want} == want  # refusals changed nothing
    assert live.review.get("/api/v1/banks/BAD!").json()["code"] == "invalid_bank"


def test_add_accepts_every_signal_type_and_checks_lengths(live: Live) -> None:
    bank = fresh_bank()
    for signal_type, value in (("dhash", DHASH), ("pdq", PDQ.upper())):
        resp = live.review.post(
            f"/api/v1/banks/{bank}/entries",
            json={"hash": value, "signal_type": signal_type, "reason": "r"},
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["taken_down"] == []
    resp = live.review.post(
        f"/api/v1/banks/{bank}/entries", json={"hash": PHASH, "signal_type": "pdq", "reason": "r"}
    )
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_hash"
    exported = live.review.get(f"/api/v1/banks/{bank}/export.csv").text
    assert exported == HEADER + f"dhash,{DHASH},{bank},r\npdq,{PDQ},{bank},r\n"


def test_export_disarms_spreadsheet_formulas_and_still_round_trips(live: Live) -> None:
    """An imported reason like =HYPERLINK(...) is stored as written, exported with a leading
    ' (a spreadsheet shows it, never runs it), and the exported file imports into another bank
    with the same hashes and the same stored reasons."""
    bank, other = fresh_bank(), fresh_bank()
    reasons = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "'kept apostrophe", "plain"]
    hashes = [PHASH, DHASH, PDQ, "0f" * 32] + [uuid.uuid4().hex * 2 for _ in range(2)]
    kinds = ["phash", "dhash", "pdq", "pdq", "pdq", "pdq"]
    lines = [
        f'{k},{h},{bank},"{r.replace(chr(34), chr(34) * 2)}"'
        for k, h, r in zip(kinds, hashes, reasons, strict=True)
    ]
    resp = live.review.post(
        f"/api/v1/banks/{bank}/import",
        content=(HEADER + "\n".join(lines) + "\n").encode(),
        headers={"content-type": "text/csv"},
    )
    assert resp.status_code == 200 and resp.json()["imported"] == 6, resp.text
    stored = {d["hash"]: d["reason"] for d in live.db["bank_entries"].find({"bank": bank})}
    assert stored == dict(zip(hashes, reasons, strict=True))  # stored as written

    exported = live.review.get(f"/api/v1/banks/{bank}/export.csv")
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.text)))[1:]
    assert [r[3] for r in rows] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'kept apostrophe",
        "plain",
    ]
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)

    again = live.review.post(
        f"/api/v1/banks/{bank}/import",
        content=exported.content,
        headers={"content-type": "text/csv"},
    )
    assert again.json() == {"bank": bank, "rows": 6, "imported": 0, "duplicates": 6}
    moved = exported.text.replace(f",{bank},", ",,")  # an empty bank cell: the target bank
    resp = live.review.post(
        f"/api/v1/banks/{other}/import",
        content=moved.encode(),
        headers={"content-type": "text/csv"},
    )
    assert resp.status_code == 200 and resp.json()["imported"] == 6, resp.text
    copied = {d["hash"]: d["reason"] for d in live.db["bank_entries"].find({"bank": other})}
    assert copied == stored
    second = live.review.get(f"/api/v1/banks/{other}/export.csv").text
    assert second == exported.text.replace(f",{bank},", f",{other},")
