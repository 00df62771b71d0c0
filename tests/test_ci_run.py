"""CI runs the README's test command: the one command of ``.ci/run`` is the Quick start's."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What .ci/run may do besides the command: start from the repository root.
_PREAMBLE = {'cd "$(dirname "$0")/.."'}


def readme_test_command() -> str:
    quick = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    after = quick.split("The test command", 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None, "the Quick start has no code block after 'The test command'"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    lines = [
        line.strip()
        for line in script.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = [line for line in lines if line not in _PREAMBLE]
    assert commands == [readme_test_command()], commands
