"""Where the shared corpus of HL7 v2 messages is, and which of its files are messages."""

from __future__ import annotations

from pathlib import Path

HL7V2 = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "hl7v2"


def hl7v2_files() -> list[Path]:
    """Every message file of the corpus except the fuzzer's broken inputs, in a fixed order."""
    if not HL7V2.exists():
        return []
    return [
        path
        for path in sorted(HL7V2.rglob("*"))
        if path.is_file() and path.suffix not in (".md", ".json") and "BadInputs" not in path.parts
    ]
