"""Every well-formed ADT, ORM, OML and ORU message of the shared corpus maps to a valid,
deterministic transaction Bundle whose requests follow the identity rules."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from adapters.feeds.config import demo_community
from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.hl7v2.messages import ADT_EVENTS, MAPPERS, map_message
from adapters.hl7v2.parse import Message, parse
from hub.fhir.validation import validate_resource
from tests.corpus import hl7v2_files

# Corpus senders are not members: map them as if the member that sends such traffic sent them.
SENDER = {"ADT": "XRMYY", "ORM": "QSWSY", "OML": "QSWSY", "ORU": "XJYZX"}
# Parse, but cannot be mapped: an A01 made of MSH and IN1 only (no PID: a timezone fixture).
NOT_MAPPABLE = {"Hl7v2TestTimezoneInput.hl7v2": "100"}
# Resources written by identifier (PUT) or created only when missing (POST ifNoneExist);
# order messages PUT their ask-at-order-entry OBX as Observations.
WRITTEN = {
    "ADT": {"Patient", "Encounter", "Condition", "Procedure"},
    "ORM": {"ServiceRequest", "Specimen", "Observation"},
    "OML": {"ServiceRequest", "Specimen", "Observation"},
    "ORU": {"DiagnosticReport", "Observation", "Specimen"},
}
REFERENCE_DATA = {"Practitioner", "Location"}


def _messages() -> list[tuple[Path, Message]]:
    out = []
    for path in hl7v2_files():
        try:
            message = parse(path.read_bytes())
        except HL7ParseError:
            continue  # broken input: the transport's tests
        code, event, _ = message.message_type
        if code in MAPPERS and event in MAPPERS[code][0]:
            out.append((path, message))
    return out


MESSAGES = _messages()


def _map(message: Message) -> Mapped:
    community = demo_community()
    member = community.member(SENDER[message.message_type[0]])
    return map_message(
        message,
        community,
        source_ref="inbox/corpus/1",
        received_at="2026-10-01T08:30:00+08:00",
        member_override=member,
    )


def test_the_corpus_has_each_supported_type() -> None:
    if not MESSAGES:
        pytest.skip("shared corpus not present")
    kinds = {m.message_type[0] for _, m in MESSAGES}
    assert kinds == {"ADT", "ORM", "OML", "ORU"}
    events = {m.message_type[1] for _, m in MESSAGES if m.message_type[0] == "ADT"}
    assert {"A01", "A03", "A08", "A40"} <= events <= ADT_EVENTS


@pytest.mark.parametrize(("path", "message"), MESSAGES, ids=lambda v: getattr(v, "name", ""))
def test_corpus_message_maps(path: Path, message: Message) -> None:
    if path.name in NOT_MAPPABLE:
        with pytest.raises(MappingError) as caught:
            _map(message)
        assert caught.value.code == NOT_MAPPABLE[path.name]
        return
    mapped = _map(message)
    bundle = mapped.bundle
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    code = message.message_type[0]
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    assert all(u.startswith("urn:uuid:") for u in full_urls)
    provenance = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert len(provenance) == 1
    # Operation entries (an A24/A37's $link/$unlink) are no resources: Provenance skips them.
    operations = {e["fullUrl"] for e in bundle["entry"] if "$" in e["request"]["url"]}
    assert {t["reference"] for t in provenance[0]["resource"]["target"]} == set(full_urls) - {
        provenance[0]["fullUrl"]
    } - operations
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        if entry["fullUrl"] in operations:
            assert resource["resourceType"] == "Parameters" and request["method"] == "POST"
            assert request["url"] in ("Patient/$link", "Patient/$unlink")
            continue
        validate_resource(resource)
        rtype = resource["resourceType"]
        if rtype == "Provenance":
            assert request == {"method": "POST", "url": "Provenance"}
            continue
        # A link message (A24/A37) only creates the records it names; it updates none.
        linking = message.message_type[1] in ("A24", "A37")
        _check_request(code, rtype, resource, request, linking)
    assert mapped.patient_key and "|" in mapped.patient_key
    # Deterministic: the same message maps to the same JSON.
    assert json.dumps(_map(message).bundle, sort_keys=True) == json.dumps(bundle, sort_keys=True)


def _check_request(
    code: str, rtype: str, resource: dict, request: dict, linking: bool = False
) -> None:
    first = resource["identifier"][0]
    if request["method"] == "PUT":
        assert rtype in WRITTEN[code]
        criteria = unquote(request["url"].split("?identifier=", 1)[1])
        system, _, value = criteria.partition("|")
        assert request["url"].startswith(f"{rtype}?identifier=")
        assert any(i.get("system") == system for i in resource["identifier"])
        assert value.replace("\\|", "|").replace("\\,", ",").replace("\\\\", "\\") in {
            i["value"] for i in resource["identifier"]
        }
    else:
        assert request["method"] == "POST"
        assert request["url"] == rtype
        assert rtype not in WRITTEN[code] or linking
        assert request["ifNoneExist"].startswith("identifier=")
        assert unquote(request["ifNoneExist"]).startswith(f"identifier={first['system']}|")
