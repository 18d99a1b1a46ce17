"""Admin pages: hash banks (entries, add, remove, CSV import/export), the audit log (filters,
CSV export) and the evidence vault. Server-rendered forms; every route is admin-only and every
POST carries the session's CSRF token (checked by ``require_admin``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from services.review import admin, banning, domain, evidence
from services.review.auth import Reviewer, require_admin
from services.review.ports import Ports
from services.review.settings import ReviewSettings
from services.shared.errors import DomainError, NotFound
from services.shared.pages import Pages

Admin = Annotated[Reviewer, Depends(require_admin)]
PageNo = Annotated[int, Query(ge=1, le=100_000)]
Text = Annotated[str, Query(max_length=200)]
FormText = Annotated[str, Form(max_length=600)]
NOTICES = frozenset({"added", "removed", "imported"})


def _url(path: str, **params: object) -> str:
    given = {k: v for k, v in params.items() if v not in ("", None)}
    return f"{path}?{urlencode(given)}" if given else path


def admin_router(settings: ReviewSettings, ports: Callable[[], Ports], pages: Pages) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_admin)], include_in_schema=False)

    # --- banks ---------------------------------------------------------------------------------

    async def banks_page(
        me: Reviewer,
        *,
        bank: str = "",
        page: int = 1,
        notice: dict[str, Any] | None = None,
        error: DomainError | None = None,
        form: dict[str, str] | None = None,
        import_form: dict[str, str] | None = None,
    ) -> Response:
        p = ports()
        summaries = await run_in_threadpool(admin.bank_summaries, p)
        entries = await run_in_threadpool(admin.bank_entries, p, bank, page)
        return pages.render(
            "banks.html",
            error.status if error else 200,
            me=me,
            request_path="/banks",
            banks=summaries,
            bank=bank,
            entries=entries,
            signals=list(domain.SIGNALS),
            notice=notice,
            error=error,
            form=form or {"signal_type": "phash", "source": "manual", "bank": bank},
            import_form=import_form or {"bank": bank, "source": "csv-import"},
            page_url=lambda n: _url("/banks", bank=bank, page=n),
        )

    @router.get("/banks")
    async def banks(
        me: Admin,
        bank: Text = "",
        page: PageNo = 1,
        done: Text = "",
        n: Annotated[int, Query(ge=0)] = 0,
        dup: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        notice = {"done": done, "n": n, "dup": dup} if done in NOTICES else None
        return await banks_page(me, bank=bank.strip(), page=page, notice=notice)

    @router.post("/banks/entries")
    async def add_entry(
        me: Admin,
        bank: FormText,
        hash: FormText,
        reason: FormText,
        signal_type: FormText = "phash",
        source: FormText = "manual",
    ) -> Response:
        form = {
            "bank": bank,
            "hash": hash,
            "reason": reason,
            "signal_type": signal_type,
            "source": source,
        }
        p = ports()
        try:
            added = await run_in_threadpool(
                lambda: banning.add_entry(
                    p,
                    settings,
                    bank=bank.strip(),
                    signal_type=signal_type.strip(),
                    hash_value=hash,
                    reason=domain.check_reason(reason),
                    source=source.strip() or "manual",
                    actor=me.username,
                )
            )
        except DomainError as exc:
            return await banks_page(me, bank=bank.strip(), error=exc, form=form)
        done = _url("/banks", bank=added.bank, done="added", n=len(added.taken_down))
        return RedirectResponse(done, status_code=303)

    @router.get("/banks/entries/{entry_id}/delete")
    async def confirm_remove(me: Admin, entry_id: str) -> Response:
        entry = await run_in_threadpool(ports().banks.get, entry_id)
        if entry is None:
            raise NotFound("No bank entry has this id.", code="entry_not_found")
        return pages.render(
            "bank_remove.html",
            me=me,
            request_path="/banks",
            entry=entry,
            error=None,
            reason="",
        )

    @router.post("/banks/entries/{entry_id}/delete")
    async def remove_entry(me: Admin, entry_id: str, reason: FormText = "") -> Response:
        p = ports()
        entry = await run_in_threadpool(p.banks.get, entry_id)
        if entry is None:
            raise NotFound("No bank entry has this id.", code="entry_not_found")
        try:
            why = domain.check_reason(reason)
        except DomainError as exc:
            return pages.render(
                "bank_remove.html",
                exc.status,
                me=me,
                request_path="/banks",
                entry=entry,
                error=exc,
                reason=reason,
            )
        await run_in_threadpool(
            lambda: banning.remove_entry(p, entry_id, actor=me.username, reason=why)
        )
        return RedirectResponse(_url("/banks", bank=entry["bank"], done="removed"), 303)

    @router.post("/banks/import")
    async def import_csv(
        me: Admin, bank: FormText, file: UploadFile, source: FormText = "csv-import"
    ) -> Response:
        import_form = {"bank": bank, "source": source}
        p = ports()
        try:
            data = await file.read(domain.IMPORT_MAX_BYTES + 1)
            if len(data) > domain.IMPORT_MAX_BYTES:
                raise DomainError(
                    f"A CSV import is at most {domain.IMPORT_MAX_BYTES} bytes.",
                    code="too_large",
                    status=413,
                )
            result = await run_in_threadpool(
                lambda: banning.import_csv(
                    p, bank=bank.strip(), data=data, source=source, actor=me.username
                )
            )
        except DomainError as exc:
            return await banks_page(me, bank=bank.strip(), error=exc, import_form=import_form)
        finally:
            await file.close()
        done = _url(
            "/banks", bank=result.bank, done="imported", n=result.imported, dup=result.duplicates
        )
        return RedirectResponse(done, status_code=303)

    # --- audit log -----------------------------------------------------------------------------

    @router.get("/audit")
    async def audit(
        me: Admin,
        actor: Text = "",
        action: Text = "",
        target: Text = "",
        since: Annotated[str, Query(alias="from", max_length=40)] = "",
        until: Annotated[str, Query(alias="to", max_length=40)] = "",
        page: PageNo = 1,
    ) -> Response:
        given = {"actor": actor, "action": action, "target": target, "from": since, "to": until}
        error: DomainError | None = None
        rows = admin.Page([], page, has_next=False)
        try:
            filters = admin.audit_filter(actor, action, target, since, until)
            p = ports()
            rows = await run_in_threadpool(admin.audit_rows, p, filters, page)
        except DomainError as exc:
            error = exc
        return pages.render(
            "audit.html",
            error.status if error else 200,
            me=me,
            request_path="/audit",
            f=given,
            rows=rows,
            error=error,
            export_url=_url("/audit/export.csv", **given),
            page_url=lambda n: _url("/audit", **given, page=n),
            filter_url=lambda **one: _url("/audit", **one),
            max_rows=admin.EXPORT_MAX_ROWS,
        )

    @router.get("/audit/export.csv")
    async def audit_export(
        me: Admin,
        actor: Text = "",
        action: Text = "",
        target: Text = "",
        since: Annotated[str, Query(alias="from", max_length=40)] = "",
        until: Annotated[str, Query(alias="to", max_length=40)] = "",
    ) -> Response:
        filters = admin.audit_filter(actor, action, target, since, until)
        p = ports()
        export = await run_in_threadpool(
            lambda: admin.export_audit_csv(p, filters, actor=me.username)
        )
        return Response(
            export.text,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="audit.csv"',
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
                "X-Export-Rows": str(export.rows),
                "X-Export-Truncated": "true" if export.truncated else "false",
            },
        )

    # --- evidence vault ------------------------------------------------------------------------

    @router.get("/evidence")
    async def evidence_list(me: Admin, page: PageNo = 1) -> Response:
        held = await run_in_threadpool(admin.evidence_held, ports(), page)
        return pages.render(
            "evidence.html",
            me=me,
            request_path="/evidence",
            held=held,
            page_url=lambda n: _url("/evidence", page=n),
            viewing=None,
            error=None,
            min_reason=evidence.MIN_REASON,
        )

    @router.get("/evidence/view")
    async def evidence_view(
        me: Admin, image_id: Text, reason: Annotated[str, Query(max_length=500)] = ""
    ) -> Response:
        """The evidence page with the image: its <img> asks the evidence API, which refuses
        without a reason and audits every read."""
        doc = await run_in_threadpool(ports().images.get, image_id)
        held = (doc or {}).get("evidence") or {}
        if not held or held.get("purged_at"):
            raise NotFound("No evidence is held for this image.", code="evidence_not_found")
        try:
            why = evidence.require_reason(reason)
        except DomainError as exc:
            viewing = {"image": doc, "reason": reason, "src": None}
            return pages.render(
                "evidence.html",
                exc.status,
                me=me,
                request_path="/evidence",
                held=None,
                viewing=viewing,
                error=exc,
                min_reason=evidence.MIN_REASON,
            )
        src = _url(f"/api/v1/evidence/{quote(image_id, safe='')}", reason=why)
        return pages.render(
            "evidence.html",
            me=me,
            request_path="/evidence",
            held=None,
            viewing={"image": doc, "reason": why, "src": src},
            error=None,
            min_reason=evidence.MIN_REASON,
        )

    return router
