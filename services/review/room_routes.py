"""The rooms queue over HTTP: the JSON API (``/api/v1/room-reports``) and the page ``/rooms``
(keyboard shortcuts from ``static/rooms.js``). Thin: decode, call ``rooms`` /
``room_decisions`` in a worker thread, map the answer. Every route needs a signed-in reviewer;
unsafe methods also carry the CSRF token (``require_reviewer`` checks both). Closing a room is
for admins (``room_decisions`` refuses reviewers with ``403 admin_only``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from services.review import assets, jobs, room_decisions, rooms
from services.review.auth import Reviewer, require_reviewer
from services.review.ports import Ports
from services.shared.errors import DomainError, NotFound
from services.shared.pages import Pages
from services.shared.repos import now

Me = Annotated[Reviewer, Depends(require_reviewer)]
FormText = Annotated[str, Form(max_length=600)]
PAGE_REPORTS = 25


class RoomDecisionRequest(BaseModel):
    action: str = Field(max_length=100)
    reason: str = Field(max_length=100)
    note: str = Field(default="", max_length=jobs.MAX_NOTE)


def room_router(ports: Callable[[], Ports], pages: Pages) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_reviewer)])
    pages.env.filters.setdefault("age", jobs.human_age)

    # --- API ---------------------------------------------------------------------------------

    @router.get("/api/v1/room-reports")
    async def list_room_reports(
        me: Me,
        limit: Annotated[int, Query(ge=1, le=rooms.LISTING_MAX)] = 50,
        skip: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        """Open room reports, minor safety first, then oldest first; with the reported
        message, its room and a few messages before it."""
        store = ports().rooms
        found = await run_in_threadpool(rooms.listing, store, limit, skip)
        entry = await run_in_threadpool(rooms.queue_entry, store)
        more = skip + len(found) < entry["depth"]
        return {
            "reports": found,
            "total": entry["depth"],
            "limit": limit,
            "skip": skip,
            "next_skip": skip + len(found) if more else None,
            "actions": room_decisions.actions_for(me),
        }

    @router.get("/api/v1/room-reports/{report_id}")
    async def get_room_report(report_id: str, me: Me) -> dict[str, Any]:
        """One room report, open or decided."""
        store = ports().rooms

        def load() -> dict[str, Any]:
            report = store.get_report(report_id)
            if report is None:
                raise NotFound("No room report has this id.", code="report_not_found")
            return rooms.report_view(store, report, now())

        return await run_in_threadpool(load)

    @router.post("/api/v1/room-reports/{report_id}/decision")
    async def decide_room_report(
        report_id: str, req: RoomDecisionRequest, me: Me
    ) -> dict[str, Any]:
        """Decide a room report: remove_message, mute (the nickname), close (the room; admins
        only) or dismiss, with a policy reason. ``409 already_decided`` the second time."""
        done = await run_in_threadpool(
            lambda: room_decisions.decide_room_report(
                ports(), report_id, me, req.action, req.reason, req.note
            )
        )
        return done.to_dict()

    # --- the page ----------------------------------------------------------------------------

    @router.get("/assets/rooms.js", include_in_schema=False)
    async def script() -> Response:
        return assets.script("rooms.js")

    async def rooms_page(me: Reviewer, status: int = 200, **extra: Any) -> Response:
        store = ports().rooms
        found = await run_in_threadpool(rooms.listing, store, PAGE_REPORTS)
        entry = await run_in_threadpool(rooms.queue_entry, store)
        return pages.render(
            "rooms.html",
            status,
            me=me,
            request_path="/rooms",
            reports=found,
            queue=entry,
            actions=room_decisions.actions_for(me),
            reasons=jobs.POLICY_REASONS,
            **extra,
        )

    @router.get("/rooms", include_in_schema=False)
    async def rooms_queue(me: Me, done: Annotated[str, Query(max_length=40)] = "") -> Response:
        return await rooms_page(
            me, done=done if done in {a.value for a in room_decisions.RoomAction} else ""
        )

    @router.post("/rooms/{report_id}/decision", include_in_schema=False)
    async def decide_page(
        report_id: str,
        me: Me,
        action: FormText = "",
        reason: FormText = "",
        note: FormText = "",
    ) -> Response:
        p = ports()
        try:
            done = await run_in_threadpool(
                lambda: room_decisions.decide_room_report(p, report_id, me, action, reason, note)
            )
        except DomainError as exc:
            form = {"report_id": report_id, "action": action, "reason": reason, "note": note}
            return await rooms_page(me, exc.status, error=exc, form=form)
        return RedirectResponse("/rooms?" + urlencode({"done": done.action}), status_code=303)

    return router
