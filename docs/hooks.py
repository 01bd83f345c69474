"""MkDocs hooks: pages show facts generated from the code, so the docs cannot drift from it.

- ``<!-- settings-table -->``: the fields of `moa_graph.MoAContext` with their defaults and
  descriptions (the same text Studio shows).
- ``<!-- cli-help -->``: ``moa-graph --help`` and every command's ``--help``.

`preprocess` is mkdocs-llmstxt's hook (``preprocess:`` in mkdocs.yml) for the Markdown copies
of the pages that llms.txt links to.
"""

import argparse
import dataclasses
import os
from typing import Any


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the markers of this module's docstring with what the code says."""
    if "<!-- settings-table -->" in markdown:
        markdown = markdown.replace("<!-- settings-table -->", settings_table())
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", cli_help())
    return markdown


def preprocess(soup: Any, output: str) -> None:
    """Escape ``|`` in table cells, so a type such as ``str | None`` stays in its column.

    Unescaped, the Markdown copy splits the cell there and drops the description after it.
    """
    for cell in soup.find_all(["td", "th"]):
        for text in cell.find_all(string=lambda s: "|" in s):
            text.replace_with(text.replace("|", "\\|"))


def settings_table() -> str:
    """Return the Markdown table of `MoAContext`'s fields."""
    from moa_graph import MoAContext

    rows = ["| field | default | what it sets |", "|---|---|---|"]
    for field in dataclasses.fields(MoAContext):
        if field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
        else:
            default = repr(field.default)
        if len(default) > 40:
            default = "see the description"
        text = field.metadata.get("description", "").replace("|", "\\|")
        rows.append(f"| `{field.name}` | `{default}` | {text} |")
    return "\n".join(rows)


def cli_help() -> str:
    """Return ``--help`` of the command and of each subcommand, as text blocks."""
    os.environ["COLUMNS"] = "100"
    from moa_graph.cli.main import parser

    top = parser()
    blocks = [("moa-graph --help", top.format_help())]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                blocks.append((f"moa-graph {name} --help", sub.format_help()))
    return "\n\n".join(f"### `{title}`\n\n```text\n{text.rstrip()}\n```" for title, text in blocks)
