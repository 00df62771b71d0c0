"""Enhanced mode end to end: commit ACK on the connection, application ACK via the outbox."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import sqlalchemy as sa

from adapters.feeds.config import demo_community
from adapters.hl7v2.parse import parse
from hub.feeds.service import FeedService
from hub.queue.outbox import Policy, deliver_due
from hub.queue.worker import drain
from tests.feeds.helpers import Receiver, ack_code, inbox_rows, send_all

MESSAGES = Path(__file__).with_name("messages")


def test_application_ack_follows_the_outcome(engine: sa.Engine, clean_db: None) -> None:
    with Receiver(lambda _cid, _n: "AA") as lis:
        base = demo_community()
        lab = dataclasses.replace(base.members["XJYZX"], application_acks=lis.url)
        community = dataclasses.replace(base, members={**base.members, "XJYZX": lab})
        service = FeedService(engine, community, mllp_port=0, run_worker=False)
        service.start()
        try:
            # MSH-15 AL, MSH-16 AL (the fixture says NE: ask for application ACKs here).
            raw = (MESSAGES / "story-3-oru.hl7").read_bytes().replace(b"|AL|NE|", b"|AL|AL|")
            [commit] = send_all(service.port or 0, [raw])
        finally:
            service.stop()
        assert ack_code(commit) == "CA"
        [row] = inbox_rows(engine)
        assert (row.app_ack, row.reply_to) == ("AL", lis.url)
        assert drain(engine) == {"applied": 1}
        deadline = time.monotonic() + 10
        while not lis.received and time.monotonic() < deadline:
            deliver_due(engine, Policy(timeout=5))
            time.sleep(0.05)
    [received] = lis.received
    assert received  # the application ACK's own control id
    [app_ack] = lis.payloads
    message = parse(app_ack)
    assert message.first("MSA").value(1) == "AA"  # type: ignore[union-attr]
    assert message.first("MSA").value(2) == "JY-R01-0001"  # type: ignore[union-attr]
    assert message.msh.value(5) == "LIS" and message.msh.value(6) == "XJYZX"
