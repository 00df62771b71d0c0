"""The order groups of ORM, OML and ORU messages: ORC, OBR, their NTEs, OBXs and SPMs.

One walk over the segments instead of a grammar per message structure and version: v2.3.1 to
v2.8 senders agree on the order (ORC, OBR, NTE, OBX, NTE, SPM) even where they differ on which
segments they send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.hl7v2.parse import Message, Segment


@dataclass
class Result:
    obx: Segment
    notes: list[Segment] = field(default_factory=list)
    specimen: Segment | None = None  # the SPM this OBX follows (an observation on the specimen)


@dataclass
class OrderGroup:
    orc: Segment | None = None
    obr: Segment | None = None
    tq1: Segment | None = None
    notes: list[Segment] = field(default_factory=list)  # NTE after ORC/OBR, before any OBX
    results: list[Result] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)

    def field(self, n_orc: int, n_obr: int, component: int = 1) -> str:
        """ORC-n, else OBR-n (placer and filler numbers, priority ...)."""
        for seg, n in ((self.orc, n_orc), (self.obr, n_obr)):
            if seg is not None and n and (value := seg.value(n, component).strip()):
                return value
        return ""

    def segment(self) -> Segment:
        """The segment errors about the group point at: OBR, else ORC."""
        seg = self.obr or self.orc
        assert seg is not None
        return seg


def order_groups(message: Message) -> list[OrderGroup]:
    groups: list[OrderGroup] = []
    current: OrderGroup | None = None
    for seg in message.segments:
        if seg.name == "ORC":
            current = OrderGroup(orc=seg)
            groups.append(current)
        elif seg.name == "OBR":
            if current is None or current.obr is not None:
                current = OrderGroup()
                groups.append(current)
            current.obr = seg
        elif current is None:
            continue  # PID, PV1, NTE about the patient ...: not part of an order
        elif seg.name == "TQ1" and current.tq1 is None:
            current.tq1 = seg
        elif seg.name == "OBX":
            spm = current.specimens[-1] if current.specimens else None
            current.results.append(Result(seg, specimen=spm))
        elif seg.name == "NTE":
            if current.results:
                current.results[-1].notes.append(seg)
            else:
                current.notes.append(seg)
        elif seg.name == "SPM":
            current.specimens.append(seg)
    return groups
