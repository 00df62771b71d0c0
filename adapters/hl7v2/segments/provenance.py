"""One Provenance per message: every entry it wrote, back to the raw message in the inbox."""

from __future__ import annotations

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.mapped import Context

_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def map_provenance(ctx: Context, *, update: bool) -> None:
    code, event, _ = ctx.message.message_type
    label = f"{code}^{event}" if event else code
    targets = [
        {"reference": entry["fullUrl"]}
        for entry in ctx.entries
        if "$" not in entry["request"]["url"]  # an operation (A24/A37 link) is no resource
    ]
    provenance = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": ctx.received_at,
        "activity": dt.coded(_OPERATION, "UPDATE" if update else "CREATE"),
        "agent": [
            {
                "type": dt.coded(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author"
                ),
                "who": {"reference": ctx.sender.reference, "display": ctx.sender.name},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": f"{ctx.community.identifier_base}/hl7v2-message",
                        "value": ctx.source_ref,
                    },
                    "display": f"{label} {ctx.message.control_id}",
                },
            }
        ],
    }
    # A plain POST: the inbox recognises a resent message by sender and control id before it
    # reaches the mapper, so a Provenance is written once per accepted message.
    ctx.add(provenance, {"method": "POST", "url": "Provenance"})
