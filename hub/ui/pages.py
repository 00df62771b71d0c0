"""The figure pages: members and feeds, mutual recognition, referrals and routed orders,
monthly feedback.  Read-only; each chart is drawn on the server from the same figures its
table shows."""

from __future__ import annotations

import json
import statistics
from functools import cache
from typing import Any

from fastapi import Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from adapters.feeds.config import profiles_dir
from hub.ops.metrics import queue_figures
from hub.services.recognition import figures as recognition
from hub.services.recognition.catalogue import load_catalogue
from hub.services.referral import figures as referral
from hub.services.referral.rules import load_rules
from hub.services.routing import figures as routing
from hub.services.routing.status import STATUSES as ROUTING_STATUSES
from hub.store.repository import now_micros
from hub.ui import figures, queries
from hub.ui.charts import Series, bar_chart, hbar_chart, plain, sparkline
from hub.ui.frame import lang_of, member_name, month_param, page, read, router, this_month, tz
from hub.ui.i18n import EN, translator


def _t(request: Request) -> Any:
    return translator(lang_of(request))


def _month_nav(month: str) -> dict[str, Any]:
    return {
        "month": month,
        "prev_month": queries.shift_month(month, -1),
        "next_month": queries.shift_month(month, 1),
    }


# --- members and feeds ------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def feeds(request: Request) -> HTMLResponse:
    t = _t(request)
    members = request.app.state.community.members
    overview = await read(request, lambda c: queries.feed_overview(c, members, tz(request)))
    queue = await run_in_threadpool(queue_figures, request.app.state.engine)
    chart = bar_chart(
        overview.hours,
        [
            Series(t("feeds.ok"), [a - e for a, e in zip(overview.hourly, overview.hourly_errors,
                                                         strict=True)]),
            Series(t("feeds.err"), overview.hourly_errors),
        ],
        title=t("feeds.all24"),
        width=900,
        height=220,
        empty_text=t("no.data"),
    )  # fmt: skip
    sparks = {
        row.sender: sparkline(
            row.hourly, errors=row.hourly_errors, title=f"{row.sender} {t('feeds.per.hour')}"
        )
        for row in overview.rows
    }
    return page(request, "feeds.html", overview=overview, queue=queue, chart=chart, sparks=sparks)


# --- mutual recognition -----------------------------------------------------------------------


@cache
def _repeat_reasons() -> dict[str, tuple[str, str]]:
    """Repeat-reason codes → (Chinese, English), from the CodeSystem in profiles/."""
    data = json.loads(
        (profiles_dir() / "recognition" / "repeat-reasons.json").read_text(encoding="utf-8")
    )
    out = {}
    for concept in data["concept"]:
        english = next(
            (d["value"] for d in concept.get("designation") or [] if d.get("language") == "en"),
            concept["code"],
        )
        out[concept["code"]] = (concept["display"], english)
    return out


def reason_label(code: str, lang: str) -> str:
    if code == "unspecified":
        return translator(lang)("reason.unspecified")
    zh, en = _repeat_reasons().get(code, (code, code))
    return en if lang == EN else zh


@router.get("/recognition")
async def recognition_page(request: Request) -> HTMLResponse:
    t, lang = _t(request), lang_of(request)
    month = month_param(request, this_month(request))
    months = queries.months_back(month, 12)

    def load(conn: Connection) -> tuple[list[recognition.Figures], list[figures.MonthFigures]]:
        return recognition.monthly(conn, month), figures.recognition_trend(conn, months)

    per_member, trend = await read(request, load)
    total = recognition.total(per_member)
    labels = [member_name(request, f.member) or "?" for f in per_member]
    empty = t("no.data")
    charts = {
        "decisions": bar_chart(
            labels,
            [
                Series(t("recognition.accepted"), [f.accepted for f in per_member]),
                Series(t("recognition.reordered"), [f.reordered for f in per_member]),
                Series(t("recognition.pending"), [f.pending for f in per_member]),
            ],
            title=t("recognition.by.member"),
            empty_text=empty,
        ),
        "rate": bar_chart(
            labels,
            [Series(t("recognition.rate"), [round(f.rate * 100, 1) for f in per_member])],
            title=t("recognition.rate.by.member"),
            empty_text=empty,
        ),
        "saved": bar_chart(
            labels,
            [Series(t("recognition.saved"), [round(f.saved_yuan, 2) for f in per_member])],
            title=t("recognition.saved.by.member"),
            empty_text=empty,
        ),
        "reasons": hbar_chart(
            [reason_label(code, lang) for code in sorted(total.repeated_by_reason)],
            [total.repeated_by_reason[code] for code in sorted(total.repeated_by_reason)],
            title=t("recognition.reasons"),
            empty_text=empty,
        ),
        "trend_rate": bar_chart(
            months,
            [Series(t("recognition.rate"), [round(m.rate * 100, 1) for m in trend])],
            title=t("recognition.trend.rate"),
            empty_text=empty,
        ),
        "trend_saved": bar_chart(
            months,
            [Series(t("recognition.saved"), [round(m.saved, 2) for m in trend])],
            title=t("recognition.trend.saved"),
            empty_text=empty,
        ),
    }
    return page(
        request,
        "recognition.html",
        figures=per_member,
        total=total,
        charts=charts,
        reason_label=lambda code: reason_label(code, lang),
        plain=plain,
        **_month_nav(month),
    )


# --- referrals and routed orders ----------------------------------------------------------------


def _item_name(code: str, lang: str) -> str:
    """A catalogue item's name (血常规 rather than 58410-2); the code if it is not listed."""
    item = load_catalogue().item(code)
    if item is None:
        return code
    return (item.display_en or code) if lang == EN else item.display


def _all_minutes(sides: dict[str, referral.Counts]) -> float | None:
    minutes = [m for counts in sides.values() for m in counts.minutes_to_accept]
    return statistics.median(minutes) if minutes else None


@router.get("/referrals")
async def referrals_page(request: Request) -> HTMLResponse:
    t = _t(request)
    month = month_param(request, this_month(request))
    rules = load_rules()
    directions = list(rules.directions)

    def load(conn: Connection) -> dict[str, Any]:
        return {
            "report": referral.monthly(conn, month, tz(request), directions),
            "routing": routing.monthly(conn, month),
            "open_referrals": figures.open_referrals(conn, rules.terminal),
            "open_routed": figures.open_routed(conn),
        }

    data = await read(request, load)
    report: referral.Report = data["report"]
    routed: routing.Report = data["routing"]
    empty = t("no.data")
    members = report.members
    receivers = [f for f in members if _all_minutes(f.received) is not None]
    charts = {
        "sent": bar_chart(
            [member_name(request, f.member) for f in members],
            [
                Series(t(f"direction.{d}"), [f.sent[d].referrals for f in members])
                for d in directions
            ],
            title=t("referrals.by.member"),
            empty_text=empty,
        ),
        "accept": hbar_chart(
            [member_name(request, f.member) for f in receivers],
            [round(_all_minutes(f.received) or 0, 1) for f in receivers],
            title=t("referrals.accept.chart"),
            empty_text=empty,
        ),
        "centres": bar_chart(
            [member_name(request, c.member) for c in routed.centres],
            [
                Series(t("routing.routed"), [c.routed for c in routed.centres]),
                Series(t("routing.resulted"), [c.resulted for c in routed.centres]),
                Series(t("routing.delivered"), [c.delivered for c in routed.centres]),
                Series(t("routing.failed"), [c.failed for c in routed.centres]),
            ],
            title=t("routing.by.centre"),
            stacked=False,
            empty_text=empty,
        ),
        "turnaround": hbar_chart(
            [member_name(request, c.member) for c in routed.centres if c.turnarounds],
            [round(c.median_turnaround_minutes or 0, 1) for c in routed.centres if c.turnarounds],
            title=t("routing.tat.chart"),
            empty_text=empty,
        ),
    }
    now = now_micros()
    return page(
        request,
        "referrals.html",
        report=report,
        routed=routed,
        directions=directions,
        open_referrals=data["open_referrals"],
        open_routed=data["open_routed"],
        charts=charts,
        all_minutes=_all_minutes,
        now=now,
        routing_status=lambda s: ROUTING_STATUSES.get(s, s) if lang_of(request) != EN else s,
        item_name=lambda code: _item_name(code, lang_of(request)),
        plain=plain,
        **_month_nav(month),
    )


# --- monthly feedback -------------------------------------------------------------------------


@router.get("/feedback")
async def feedback_page(request: Request) -> HTMLResponse:
    t = _t(request)
    members = request.app.state.community.members
    latest = await read(request, figures.latest_feedback_month)
    month = month_param(request, latest or queries.shift_month(this_month(request), -1))
    months = queries.months_back(month, 12)

    def load(conn: Connection) -> dict[str, Any]:
        return {
            "centres": figures.feedback_by_centre(conn, month, members, tz(request)),
            "trend": figures.feedback_trend(conn, months),
            "unaddressed": figures.unaddressed(conn, month),
            "runs": figures.feedback_runs_recent(conn),
        }

    data = await read(request, load)
    centres: list[figures.CentreFeedback] = data["centres"]
    empty = t("no.data")
    charts = {
        "centres": bar_chart(
            [c.name or c.code for c in centres],
            [
                Series(t("feedback.sent"), [c.sent for c in centres]),
                Series(t("feedback.amended"), [c.amended for c in centres]),
                Series(t("feedback.pulled"), [c.pulled for c in centres]),
            ],
            title=t("feedback.chart"),
            stacked=False,
            empty_text=empty,
        ),
        "trend": bar_chart(
            months,
            [
                Series(t("feedback.new"), [data["trend"][m][0] - data["trend"][m][1]
                                           for m in months]),
                Series(t("feedback.amended"), [data["trend"][m][1] for m in months]),
            ],
            title=t("feedback.trend"),
            empty_text=empty,
        ),
    }  # fmt: skip
    return page(
        request,
        "feedback.html",
        centres=centres,
        unaddressed=data["unaddressed"],
        runs=data["runs"],
        charts=charts,
        **_month_nav(month),
    )
