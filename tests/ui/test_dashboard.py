"""The office's dashboard end to end: headless Chromium (Debian's, driven by Playwright)
against a running hub whose demo data came in through the real MLLP port and FHIR API.

Every page loads with its charts drawn from data, the message browser finds messages by
patient, control id and status, a failed message is applied by a replay once its cause is
fixed, a review is decided with a click, and the login refuses a wrong secret.  Each page is
saved as a screenshot (tests/ui/screenshots/, or $HUB_UI_SCREENSHOTS).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.ui import community
from tests.ui.conftest import Feed, Shot

ERROR_ACKS = ("AE", "AR", "CE", "CR")


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def log_in(page: Any, office: tuple[str, str], next_path: str = "/ui") -> None:
    page.goto(next_path)
    page.fill("input[name=client_id]", office[0])
    page.fill("input[name=client_secret]", office[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def bars(page: Any, scope: str = "") -> int:
    """Bars drawn in the charts under ``scope``: a chart with data has at least one."""
    return int(page.locator(f"{scope} svg.chart rect.bar".strip()).count())


def test_the_office_sees_the_community_and_acts(
    page: Any, api: httpx.Client, feed: Feed, office: tuple[str, str], shot: Shot
) -> None:
    expect = _expect()
    # --- the community's traffic ------------------------------------------------------------------
    duplicates = community.duplicate_records(api)
    # Accepted (AA) but not applicable while two records share the MRN: failed, kept.
    assert feed.send(community.story("story-1-a01.hl7")) == ["AA"]
    assert feed.send(community.malformed_result())[0] in ERROR_ACKS
    assert feed.send(*community.homeless_stay()) == ["AA", "AA"]
    community.recognition(api)
    community.referral_and_routed_order(api)
    babies = community.newborns(api)

    log_in(page, office)

    # --- members and feeds ------------------------------------------------------------------------
    page.goto("/ui")
    lead = page.locator('#feeds tr[data-sender="XRMYY"]')
    expect(lead).to_contain_text("某县人民医院")
    assert bars(page, '#feeds tr[data-sender="XRMYY"]') > 0  # its last 24 hours, per hour
    lab = page.locator('#feeds tr[data-sender="XJYZX"]')
    expect(lab.locator("td").nth(5)).to_have_text("100.0%")  # its one message was refused
    assert int(page.locator("figure.chart-box svg.chart").first.get_attribute("data-points")) > 0
    expect(page.locator(".card.warn a.figure")).to_have_text("1")  # one failed, to replay
    shot(page, "1-feeds")

    # --- the message browser ----------------------------------------------------------------------
    page.goto("/ui/messages")
    page.fill("input[name=patient]", community.STORY_MRN)
    page.click("#search button[type=submit]")
    expect(page.locator("#messages tbody tr")).to_have_count(2)  # the A01 and the bad result
    page.fill("input[name=patient]", "")
    page.fill("input[name=control_id]", "JY-R01-0099")
    page.click("#search button[type=submit]")
    expect(page.locator("#messages tbody tr")).to_have_count(1)
    expect(page.locator("#messages .status.rejected")).to_have_count(1)
    page.fill("input[name=control_id]", "")
    page.select_option("select[name=status]", "failed")
    page.click("#search button[type=submit]")
    expect(page.locator("#messages tbody tr")).to_have_count(1)
    shot(page, "2-messages")
    page.click("#messages tbody tr a >> nth=0")

    expect(page.locator("#status .status")).to_have_class("status failed")
    expect(page.locator("#error")).to_contain_text("matches more than one resource")
    pid = page.locator('#segments tr[data-segment="PID"]')
    expect(pid.locator('.field[title="PID-3"]')).to_contain_text(community.STORY_MRN)
    expect(page.locator('#segments tr[data-segment="PV1"]')).to_have_count(1)
    expect(page.locator("#entries tbody tr").first).to_contain_text("Patient")
    # Replayed before the cause is fixed: mapped again, and it fails again.
    page.click("#replay")
    expect(page.locator('#replayed [data-outcome="failed"]')).to_contain_text("入库失败 1")
    expect(page.locator("#status .status")).to_have_class("status failed")
    # The office removes the duplicate record; the replay applies the message.
    assert api.delete(f"/fhir/Patient/{duplicates[1]}").status_code == 200
    page.click("#replay")
    expect(page.locator('#replayed [data-outcome="applied"]')).to_contain_text("已入库 1")
    expect(page.locator("#status .status")).to_have_class("status applied")
    produced = page.locator("#produced a")
    expect(produced.filter(has_text="Encounter/")).to_have_count(1)
    shot(page, "3-message-replayed")
    produced.filter(has_text="Patient/").first.click()
    expect(page.locator("#resource-json")).to_contain_text(community.STORY_MRN)

    # The rest of the stay, now that the patient's record is whole; then the month's feedback.
    assert feed.send(community.story("story-3-oru.hl7"))[0] in ("AA", "CA")
    assert feed.send(community.story("story-5-a03.hl7")) == ["AA"]
    run = api.post("/admin/feedback/runs", json={"month": community.MONTH})
    assert run.status_code == 200, run.text

    # --- mutual recognition -----------------------------------------------------------------------
    page.goto(f"/ui/recognition?month={community.MONTH}")
    expect(page.locator("#checked")).to_have_text("2")
    expect(page.locator("#accepted")).to_have_text("1")
    expect(page.locator("#rate")).to_have_text("50.0%")
    expect(page.locator('#recognition tr[data-member="QSWSY"]')).to_contain_text("病情变化 1")
    assert bars(page, ".charts") >= 4  # decisions, reasons, rate, money saved
    expect(page.locator("svg.chart title").filter(has_text="病情变化")).to_have_count(1)
    shot(page, "4-recognition")

    # --- referrals and routed orders --------------------------------------------------------------
    page.goto("/ui/referrals")  # this month: both were made today
    sent_up = page.locator('#referral-figures tr[data-member="QSWSY"][data-direction="up"] td')
    expect(sent_up.nth(2)).to_have_text("1")  # member, direction, then referrals sent
    expect(page.locator("#open-referrals tbody tr")).to_have_count(1)
    expect(page.locator("#open-referrals")).to_contain_text("绿色通道")
    expect(page.locator("#open-routed tbody tr")).to_contain_text("县临床检验中心")
    assert bars(page, ".charts") >= 2  # referrals per member, orders per centre
    shot(page, "5-referrals")

    # --- monthly feedback -------------------------------------------------------------------------
    page.goto(f"/ui/feedback?month={community.MONTH}")
    expect(page.locator('#centres tr[data-centre="QSWSY"] td').nth(1)).to_have_text("1")
    expect(page.locator("#unaddressed-count")).to_have_text("1")
    expect(page.locator("#unaddressed")).to_contain_text("赵流浪")
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    assert bars(page, ".charts") >= 2
    shot(page, "6-feedback")

    # --- the patient index's review ---------------------------------------------------------------
    page.goto("/ui/reviews")
    expect(page.locator("#review-count")).to_have_text("1")
    expect(page.locator("article.review .name")).to_have_text(["张三之子", "张三之子"])
    shot(page, "7-reviews")
    page.click("article.review button.same")
    expect(page.locator("#decided")).to_be_visible()
    expect(page.locator("#review-count")).to_have_text("0")
    assert community.master_of(api, babies[0]) == community.master_of(api, babies[1])

    # The English switch, on a page with data.
    page.goto(f"/ui/recognition?month={community.MONTH}&lang=en")
    expect(page.locator("h1")).to_contain_text("Mutual recognition")
    expect(page.locator("svg.chart title").filter(has_text="condition changed")).to_have_count(1)
    shot(page, "8-recognition-en")


def test_the_login_refuses_a_wrong_secret(page: Any, office: tuple[str, str], shot: Shot) -> None:
    expect = _expect()
    page.goto("/ui/reviews")
    page.wait_for_url("**/ui/login?next=%2Fui%2Freviews")
    page.fill("input[name=client_id]", office[0])
    page.fill("input[name=client_secret]", "not-the-secret")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("密钥错误")
    assert not [c for c in page.context.cookies() if c["name"] == "hub_ui_session"]
    shot(page, "0-login-refused")
    page.click("a.lang")
    expect(page.locator("h1")).to_have_text("Office login")
    page.fill("input[name=client_id]", office[0])
    page.fill("input[name=client_secret]", office[1])
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/reviews")
    expect(page.locator("h1")).to_contain_text("Patient index: open reviews")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "hub_ui_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    page.click("button.link")  # log out
    page.wait_for_url("**/ui/login")
    page.goto("/ui")
    page.wait_for_url("**/ui/login?next=%2Fui")
