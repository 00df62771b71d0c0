"""Mutated HL7 v2 messages from the shared corpus, for fuzzing the intake.

Seeds: every message of ../shared/corpus/hl7v2 (the nHapi fuzzer's broken inputs included)
and the demo community's own messages (GB18030 text, resident IDs, enhanced-mode ACKs).  Each
generated input is a seed with one to four mutations at the level where intake code has
decisions to make: bytes, segments, fields, the MSH header (delimiters, type, version,
character set, acknowledgement mode), escape sequences, and splices of two messages.  The
stream is reproducible from its seed.

The full run (figures in the README's Reliability section)::

    .venv/bin/python -m tests.ops.mutations --count 100000 [--db URL] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adapters.hl7v2.batch import split_messages
from adapters.hl7v2.text import msh_fields
from tests.corpus import HL7V2, hl7v2_files

REPO = Path(__file__).resolve().parents[2]
DEMO_DIRS = (REPO / "tests" / "feeds" / "messages", REPO / "tests" / "adapters" / "messages")
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

_SEGMENT_END = re.compile(rb"\r\n|\r|\n")
_NASTY = [
    b"",
    b"\x00",
    b"\\",
    b"\\X0D\\",
    b"\\E\\\\T\\\\S\\\\R\\",
    b"\\X\\",
    b"\\Xzz\\",
    b"\\.br\\",
    b"^^^^^^",
    b"~~~~",
    b"&&&",
    b"|||||||||||",
    "张三^李四".encode(),
    "张三".encode("gb18030"),
    b"\xff\xfe\xfd",
    b"\xc3\x28",
    b"\xef\xbb\xbf",
    b"-1",
    b"1e309",
    b"99999999999999999999999999",
    b"NaN",
    b"20261301250000",
    b"20260230",
    b"2026102110000000000+9999",
    b"330521196003152716",
    b"33052119600315271X",
    b"A" * 300,
    b"9" * 70,
    b"\x0b",
    b"\x1c\r",
    b"MSH|^~\\&|",
]
_TYPES = [b"ADT^A01", b"ADT^A08^ADT_A01", b"ADT^A40", b"ADT^A37", b"ADT^A24", b"ORU^R01",
          b"ORM^O01", b"OML^O21", b"ACK", b"QRY^A19", b"ZZZ^Z99", b"", b"^", b"ORU"]  # fmt: skip
_VERSIONS = [b"2.3", b"2.3.1", b"2.4", b"2.5", b"2.5.1", b"2.8", b"", b"9.9", b"2.5^CHN"]
_CHARSETS = [b"", b"UNICODE UTF-8", b"GB18030", b"GBK", b"ASCII", b"8859/1", b"CHINA",
             b"UNICODE UTF-16", b"NOT-A-CHARSET", b"UNICODE UTF-8~GB18030"]  # fmt: skip
_ACK_MODES = [b"", b"AL", b"NE", b"ER", b"SU", b"XX"]
_ENCODINGS = [b"^~\\&", b"^~\\&#", b"^~\\", b"", b"|||", b"$%*!", b"^^^^"]


def seed_messages() -> list[bytes]:
    """Every corpus and demo message, split from multi-message files."""
    files = [*hl7v2_files(), *sorted((HL7V2 / "nHapi" / "BadInputs").rglob("*"))]
    files += [p for d in DEMO_DIRS if d.exists() for p in sorted(d.glob("*.hl7"))]
    seeds: list[bytes] = []
    for path in files:
        if not path.is_file() or path.suffix in (".md", ".json"):
            continue
        data = path.read_bytes()
        seeds.extend(split_messages(data) or [data])
    return seeds


def _segments(raw: bytes) -> list[bytes]:
    return [s for s in _SEGMENT_END.split(raw) if s]


def _join(segments: list[bytes], rng: random.Random) -> bytes:
    end = rng.choice([b"\r", b"\r", b"\r", b"\n", b"\r\n"])
    return end.join(segments) + (end if rng.random() < 0.9 else b"")


def _field_sep(raw: bytes) -> bytes:
    start = raw.find(b"MSH")
    return raw[start + 3 : start + 4] if start != -1 and len(raw) > start + 3 else b"|"


def _set_msh(raw: bytes, n: int, value: bytes) -> bytes:
    """MSH-n replaced (n >= 3), the header padded with empty fields when it is shorter."""
    segments = _segments(raw)
    index = next((i for i, s in enumerate(segments) if s.startswith(b"MSH")), None)
    if index is None:
        return raw
    sep = _field_sep(raw) or b"|"
    fields = segments[index].split(sep)
    while len(fields) < n:
        fields.append(b"")
    fields[n - 1] = value
    segments[index] = sep.join(fields)
    return b"\r".join(segments) + b"\r"


# --- mutations: (raw, rng, seeds) → raw -------------------------------------------------------
Mutation = Callable[[bytes, random.Random, list[bytes]], bytes]


def flip_bytes(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def insert_bytes(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    at = rng.randint(0, len(raw))
    junk = rng.choice(_NASTY) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 32))
    return raw[:at] + junk + raw[at:]


def delete_span(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + raw[at + rng.randint(1, 64) :]


def truncate(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    return raw[: rng.randint(0, len(raw))]


def drop_segment(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    segments = _segments(raw)
    if len(segments) > 1:
        del segments[rng.randrange(len(segments))]
    return _join(segments, rng)


def repeat_segment(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    segments = _segments(raw)
    if segments:
        i = rng.randrange(len(segments))
        segments[i:i] = [segments[i]] * rng.randint(1, 30)
    return _join(segments, rng)


def shuffle_segments(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    segments = _segments(raw)
    body = segments[1:]
    rng.shuffle(body)
    return _join(segments[:1] + body, rng)


def mutate_field(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    segments = _segments(raw)
    if not segments:
        return raw
    sep = _field_sep(raw) or b"|"
    i = rng.randrange(len(segments))
    fields = segments[i].split(sep)
    j = rng.randrange(len(fields))
    choice = rng.random()
    if choice < 0.5:
        fields[j] = rng.choice(_NASTY)
    elif choice < 0.7:
        fields[j] = fields[j] * rng.randint(2, 200)
    elif choice < 0.85:
        fields[j] = b"^".join([fields[j]] * rng.randint(2, 12))
    else:
        fields[j:j] = [b""] * rng.randint(1, 40)
    segments[i] = sep.join(fields)
    return _join(segments, rng)


def mutate_header(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    which = rng.choice(["type", "version", "charset", "ack", "control", "sender", "encoding"])
    if which == "type":
        return _set_msh(raw, 9, rng.choice(_TYPES))
    if which == "version":
        return _set_msh(raw, 12, rng.choice(_VERSIONS))
    if which == "charset":
        return _set_msh(raw, 18, rng.choice(_CHARSETS))
    if which == "ack":
        return _set_msh(_set_msh(raw, 15, rng.choice(_ACK_MODES)), 16, rng.choice(_ACK_MODES))
    if which == "control":
        return _set_msh(raw, 10, rng.choice([b"", b"X" * 200, b"\\E\\", rng.choice(_NASTY)]))
    if which == "sender":
        return _set_msh(raw, 4, rng.choice([b"", b"XJYZX", b"XRMYY", b"NOBODY", b"QSWSY^^L"]))
    start = raw.find(b"MSH")
    if start == -1:
        return raw
    encoding = rng.choice(_ENCODINGS)
    end = raw.find(raw[start + 3 : start + 4], start + 4)
    return raw[: start + 4] + encoding + (raw[end:] if end != -1 else b"")


def splice(raw: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    other = _segments(rng.choice(seeds))
    segments = _segments(raw)
    cut = rng.randint(0, len(segments))
    return _join(segments[:cut] + other[rng.randint(0, len(other)) :], rng)


def recode(raw: bytes, rng: random.Random, _s: list[bytes]) -> bytes:
    """The same text in another character set than MSH-18 says (a classic feed mistake)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace").encode("utf-8", errors="replace")
    return text.encode(rng.choice(["gb18030", "utf-16", "latin-1"]), errors="replace")


MUTATIONS: list[Mutation] = [
    flip_bytes, insert_bytes, delete_span, truncate, drop_segment, repeat_segment,
    shuffle_segments, mutate_field, mutate_field, mutate_header, mutate_header, splice, recode,
]  # fmt: skip


def _member_for(raw: bytes, rng: random.Random) -> bytes:
    """A member that sends this kind of message: results from the lab centre, the rest from
    the county hospital, now and then a township centre."""
    if b"ORU" in raw[:200]:
        return rng.choice([b"XJYZX", b"XJYZX", b"XRMYY"])
    return rng.choice([b"XRMYY", b"XRMYY", b"QSWSY"])


def generate(count: int, seed: int = 20261101) -> Iterator[bytes]:
    """``count`` inputs; control ids made unique most of the time so most inputs are new
    messages (a share keep theirs, to exercise resends and reused control ids)."""
    rng = random.Random(seed)
    seeds = seed_messages()
    for n in range(count):
        raw = rng.choice(seeds)
        if rng.random() < 0.7:
            # Most corpus messages come from facilities outside the community and would be
            # refused on MSH-4 alone: addressed from a member, they reach parsing and mapping.
            raw = _set_msh(raw, 4, _member_for(raw, rng))
        if rng.random() < 0.85:
            raw = _set_msh(raw, 10, f"FZ{seed % 1000}-{n}".encode())
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
            raw = rng.choice(MUTATIONS)(raw, rng, seeds)
        yield raw


# --- what counts as a proper answer ----------------------------------------------------------
def ack_code(ack: bytes) -> str | None:
    """MSA-1 of an ACK, read from the bytes (the ACK may be in GB18030 or UTF-16...)."""
    for encoding in ("utf-8", "gb18030", "utf-16", "latin-1"):
        try:
            text = ack.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not text.startswith("MSH") or len(text) < 4:
            continue
        sep = text[3]
        for segment in re.split(r"\r\n|\r|\n", text):
            if segment.startswith("MSA" + sep):
                return segment.split(sep)[1] if len(segment.split(sep)) > 1 else ""
    return None


def enhanced_mode_without_commit_ack(raw: bytes) -> bool:
    """MSH-15 asks for no commit ACK in this case: silence is the right answer."""
    fields = msh_fields(raw)  # as intake reads it (past a byte-order mark, say)
    return len(fields) >= 15 and fields[14].strip().upper() not in ("", "AL")


@dataclass
class Tally:
    inputs: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    silent: int = 0  # enhanced mode said NE/ER/SU
    failures: list[tuple[bytes, str]] = field(default_factory=list)

    def line(self, seconds: float) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.codes.items()))
        return (
            f"{self.inputs} inputs in {seconds:.1f} s ({self.inputs / seconds:.0f}/s): {codes}, "
            f"no commit ACK asked {self.silent}; failures {len(self.failures)}"
        )


def check_intake(receipt_ack: bytes | None, raw: bytes, tally: Tally) -> None:
    tally.inputs += 1
    if receipt_ack is None:
        if enhanced_mode_without_commit_ack(raw):
            tally.silent += 1
            return
        tally.failures.append((raw, "no ACK"))
        return
    code = ack_code(receipt_ack)
    if code not in ACK_CODES:
        tally.failures.append((raw, f"answer is not an ACK: {receipt_ack[:80]!r}"))
        return
    tally.codes[code] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    import tempfile

    from adapters.feeds.config import demo_community
    from hub.db import make_engine
    from hub.queue.intake import receive
    from hub.store.migrate import upgrade

    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='hub-fuzz-')}/fuzz.db"
    upgrade(url)
    engine, community = make_engine(url), demo_community()
    tally = Tally()
    started = time.perf_counter()
    for n, raw in enumerate(generate(args.count, args.seed), 1):
        try:
            receipt = receive(engine, raw, community, transport="fuzz")
        except Exception as exc:  # the finding this run exists for
            tally.inputs += 1
            tally.failures.append((raw, f"raised {type(exc).__name__}"))
            continue
        check_intake(receipt.ack, raw, tally)
        if n % 10_000 == 0:
            print(tally.line(time.perf_counter() - started), flush=True)
    print(tally.line(time.perf_counter() - started))
    for raw, why in tally.failures[:20]:
        print(f"  {why}: {raw[:200]!r}")
    raise SystemExit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
