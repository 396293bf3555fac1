"""The Python blocks of README.md, with the section each one is in and whether tests skip it.

    python tools/readme_blocks.py [--section TITLE]   # list them: line, section, skip reason

A block is a fenced code block opened by a line of exactly three backticks and ``python``. A block
that cannot run offline (it needs CIFAR-10 or a network) starts with the line

    # readme-test: skip (the reason)

and tests/test_readme.py reports it as skipped with that reason; every other block is run, each
in a fresh interpreter from an empty folder. Any other ``readme-test:`` line is an error, so a
misspelt marker cannot hide a block. tools/check_wheel.py runs the blocks of the section "Use it
in your own model" against the installed wheel.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The section whose examples tools/check_wheel.py runs against the installed wheel.
OWN_MODEL_SECTION = "Use it in your own model"

MARKER = "readme-test:"
SKIP = re.compile(r"^# readme-test: skip \((?P<reason>.*\S.*)\)$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One Python block: ``line`` is the line of its opening fence (from 1), ``section`` the
    title of the enclosing ``## `` section, ``skip_reason`` None for a block that must run."""

    line: int
    section: str
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def python_blocks(text: str) -> list[Block]:
    """Every Python block of a README's ``text``, in order. Raises ValueError for a fence that is
    never closed or a malformed ``readme-test:`` line."""
    blocks, section = [], ""
    fence = None  # (language, first line number, lines) while inside a fenced block
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            if stripped.startswith("```"):
                fence = (stripped[3:].strip(), number, [])
            elif line.startswith("## "):
                section = line[3:].strip()
        elif stripped == "```":
            language, start, lines = fence
            if language == "python":
                blocks.append(_block(start, section, textwrap.dedent("\n".join(lines)) + "\n"))
            fence = None
        else:
            fence[2].append(line)
    if fence is not None:
        raise ValueError(f"README.md:{fence[1]}: a fenced block is never closed")
    return blocks


def _block(start: int, section: str, code: str) -> Block:
    lines = code.splitlines()
    skip_reason = None
    for offset, line in enumerate(lines):
        if MARKER not in line:
            continue
        match = SKIP.match(line.strip())
        if match is None or offset != 0:
            raise ValueError(
                f"README.md:{start + 1 + offset}: {line.strip()!r}: the only marker is "
                "'# readme-test: skip (reason)', on the first line of a block")
        skip_reason = match.group("reason").strip()
    return Block(start, section, code, skip_reason)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", help="only the blocks of this '## ' section")
    args = parser.parse_args(argv)
    for block in python_blocks(README.read_text(encoding="utf-8")):
        if args.section is None or block.section == args.section:
            status = f"skipped ({block.skip_reason})" if block.skip_reason else "runs"
            print(f"{block.where}\t{block.section}\t{status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
