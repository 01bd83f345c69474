"""Every ``moa-graph`` command line in the README and the docs parses with the real parser."""

import re
import shlex
from pathlib import Path

import pytest

from moa_graph.cli.main import parser

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "studio/README.md"]


def command_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), re.S):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                line = line.split(" #")[0].strip()
                if "moa-graph " in line and not line.startswith("#"):
                    command = line[line.index("moa-graph ") :].split("|")[0].split("&&")[0]
                    found.append((f"{page.relative_to(ROOT)}: {command}", command))
    return found


@pytest.mark.parametrize(("where", "command"), command_lines(), ids=lambda x: x[:60])
def test_the_command_parses(where: str, command: str) -> None:
    words = shlex.split(command)[1:]
    try:
        parser().parse_args(words)
    except SystemExit as exited:
        pytest.fail(f"{where} does not parse (exit {exited.code})")


def test_there_are_commands_to_check() -> None:
    assert len(command_lines()) > 20
