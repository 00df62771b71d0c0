"""After the month: wait for the hub to finish its work, run the monthly feedback, let the
health-archive system pull it, and read back what the office's dashboards will show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from adapters.feeds.config import Community

Headers = Callable[[str], dict[str, str]]
FHIR_JSON = "application/fhir+json"
MASTER_TAG = "https://ygt.example.org/fhir/CodeSystem/patient-index|master"
HR_TAG = "https://ygt.example.org/fhir/CodeSystem/recognition-mark|HR"
DISCHARGE_SUMMARY = "http://loinc.org|18842-5"


async def _count(http: httpx.AsyncClient, url: str, headers: Headers, **params: str) -> int:
    answer = await http.get(url, params=params, headers=headers("admin"))
    answer.raise_for_status()
    body = answer.json()
    return int(body.get("total", len(body.get("messages", body.get("entry", [])))))


async def settle(
    http: httpx.AsyncClient, headers: Headers, console: Console, timeout: float = 300
) -> None:
    """Until the worker has applied every message and the outbox has delivered everything."""
    deadline = time.monotonic() + timeout
    with console.status("[bold]the hub finishes applying and delivering") as status:
        while time.monotonic() < deadline:
            inbox = await _count(http, "/admin/inbox", headers, status="pending", limit="1000")
            outbox = await _count(http, "/admin/outbox", headers, status="pending", limit="1000")
            if inbox == 0 and outbox == 0:
                return
            status.update(f"[bold]the hub finishes: {inbox} to apply, {outbox} to deliver")
            await asyncio.sleep(0.25)
    console.print("[yellow]demo[/] the hub still had work queued; going on")


async def notified(pending: Callable[[], int], console: Console, timeout: float = 60) -> None:
    """Until the Subscriptions' notifications (the archive's new documents) are delivered."""
    deadline = time.monotonic() + timeout
    with console.status("[bold]notifying subscribers") as status:
        while (left := pending()) and time.monotonic() < deadline:
            status.update(f"[bold]notifying subscribers: {left} to go")
            await asyncio.sleep(0.25)


async def feedback(
    http: httpx.AsyncClient, headers: Headers, month: str, console: Console
) -> dict[str, Any]:
    """住院信息每月反馈 for the month, as the office starts it from the dashboard."""
    with console.status(f"[bold]monthly inpatient feedback {month}"):
        deadline = time.monotonic() + 120
        while True:
            answer = await http.post(
                "/admin/feedback/runs", json={"month": month}, headers=headers("admin")
            )
            # 409: the schedule's own run (a catch-up at start) holds the lease; wait for it.
            if answer.status_code != 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    answer.raise_for_status()
    filed: dict[str, Any] = answer.json()
    return filed


async def archive_pull(
    http: httpx.AsyncClient, headers: Headers, community: Community, month: str
) -> int:
    """The health-archive system pulls each centre's documents of the month, page by page."""
    archive = next((m.code for m in community.members.values() if m.kind == "health-archive"), "")
    if not archive:
        return 0
    pulled = 0
    for centre in community.members.values():
        if centre.kind not in ("township-centre", "community-centre"):
            continue
        url: str | None = f"/fhir/Organization/{centre.code}/$inpatient-feedback"
        params: dict[str, str] | None = {"month": month, "_count": "50"}
        while url:
            answer = await http.get(
                url, params=params, headers={"Accept": FHIR_JSON, **headers(archive)}
            )
            answer.raise_for_status()
            page = answer.json()
            pulled += sum(
                1 for e in page.get("entry", []) if e["resource"]["resourceType"] == "Composition"
            )
            url = next((ln["url"] for ln in page.get("link", []) if ln["relation"] == "next"), None)
            params = None
    return pulled


def _parts(parameter: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parameter.get("part", []):
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        out[part["name"]] = _parts(part) if value is None and "part" in part else value
    return out


async def _operation(http: httpx.AsyncClient, path: str, headers: Headers, month: str) -> list:
    answer = await http.get(f"/fhir/{path}", params={"month": month}, headers=headers("admin"))
    answer.raise_for_status()
    return list(answer.json().get("parameter", []))


async def summary(
    http: httpx.AsyncClient, headers: Headers, month: str, filed: dict[str, Any]
) -> dict[str, Any]:
    """The figures the office's dashboards show, read through the hub's own API."""
    fhir = "/fhir/"

    async def count(kind: str, **params: str) -> int:
        return await _count(http, fhir + kind, headers, _summary="count", **params)

    recognition = next(
        (_parts(p) for p in await _operation(http, "$recognition-report", headers, month)
         if _parts(p).get("member") == "*"), {},
    )  # fmt: skip
    referral = next(
        (_parts(p) for p in await _operation(http, "$referral-report", headers, month)
         if p["name"] == "total"), {},
    )  # fmt: skip
    routing = next(
        (_parts(p) for p in await _operation(http, "$routing-report", headers, month)
         if p["name"] == "total"), {},
    )  # fmt: skip
    rejected = await _count(http, "/admin/inbox", headers, status="rejected", limit="1000")
    return {
        "records": await count("Patient"),
        "persons": await count("Patient", _tag=MASTER_TAG),
        "reviews": await count("Task", code="review-link", status="requested"),
        "stays": await count("Encounter", **{"class": "IMP"}),
        "reports": await count("DiagnosticReport"),
        "recognised_mark": await count("DiagnosticReport", _tag=HR_TAG),
        "documents": await count("Composition", type=DISCHARGE_SUMMARY, date=month),
        "feedback": filed,
        "recognition": recognition,
        "referral": referral,
        "routing": routing,
        "rejected": rejected,
    }


def show(console: Console, f: dict[str, Any]) -> None:
    rec, route, fb = f["recognition"], f["routing"], f["feedback"]
    up, down = f["referral"].get("up", {}), f["referral"].get("down", {})
    rows = [
        ("patient index", f"{f['records']} member records of {f['persons']} people; "
         f"{f['reviews']} possible matches for the office to review"),
        ("stays and results", f"{f['stays']} inpatient stays, {f['reports']} reports "
         f"({f['recognised_mark']} carry the HR mark)"),
        ("mutual recognition", f"{rec.get('checked', 0)} checks, {rec.get('accepted', 0)} "
         f"accepted, {rec.get('reordered', 0)} re-ordered, ¥{rec.get('savedYuan', 0)} saved"),
        ("two-way referral", f"{up.get('referrals', 0)} up ({up.get('greenChannel', 0)} "
         f"green channel), {down.get('referrals', 0)} down"),
        ("routed orders", f"{route.get('routed', 0)} routed to the centres, "
         f"{route.get('resulted', 0)} resulted ({route.get('delivered', 0)} delivered back), "
         f"{route.get('cancelled', 0)} cancelled"),
        ("monthly feedback", f"{f['documents']} discharge documents, "
         f"{fb.get('packages_written', '?')} centres' packages written"),
        ("malformed messages", f"{f['rejected']} refused and kept for replay"),
    ]  # fmt: skip
    table = Table(title="What the office sees", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, text in rows:
        table.add_row(name, text)
    console.print(table)
