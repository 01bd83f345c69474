"""The reference answers: the docs' imports, the modules' ``__all__`` and the API page agree."""

import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
API = (ROOT / "docs/reference/api.md").read_text()


def imports_in_docs() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for page in PAGES:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            pattern = r"^from (moa_graph[\w.]*) import (?:\(([^)]*)\)|([^\n(]+))$"
            for module, grouped, single in re.findall(pattern, block, re.M):
                names = (grouped or single).replace("\n", " ").split(",")
                found.setdefault(module, set()).update(n.strip() for n in names if n.strip())
    return found


def documented_modules() -> set[str]:
    entries = re.findall(r"^::: (moa_graph[\w.]*)\.(\w+)$", API, re.M)
    return {module for module, _ in entries}


def test_every_name_the_docs_import_is_public() -> None:
    for module, names in imports_in_docs().items():
        public = set(importlib.import_module(module).__all__)
        assert names <= public, f"{module} does not list {sorted(names - public)} in __all__"


def test_every_public_name_has_a_reference_entry() -> None:
    modules = (set(imports_in_docs()) | documented_modules()) - {"moa_graph.cli.main"}
    missing = [
        f"{module}.{name}"
        for module in sorted(modules)
        for name in getattr(importlib.import_module(module), "__all__", ())
        if f"::: {module}.{name}\n" not in API + "\n"
    ]
    assert missing == [], f"add to docs/reference/api.md: {missing}"
    assert "<!-- settings-table -->" in API  # MoAContext's fields on its own entry


def test_a_type_with_a_pipe_stays_in_its_table_cell_in_the_markdown_copies() -> None:
    bs4 = pytest.importorskip("bs4")  # the "docs" extra
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs/hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    soup = bs4.BeautifulSoup(
        "<p>a | b</p><table><tr><td><code>str | None</code></td><td>why</td></tr></table>",
        "html.parser",
    )
    hooks.preprocess(soup, "api/index.md")
    assert soup.td.get_text() == "str \\| None"
    assert soup.p.get_text() == "a | b"  # only table cells


def test_every_graph_langgraph_json_serves_is_named_where_the_graphs_are_listed() -> None:
    graphs = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
    for page in ("docs/concepts.md", "studio/README.md", "docs/guides/studio.md"):
        text = (ROOT / page).read_text()
        missing = [name for name in graphs if f"`{name}`" not in text and f"{name}.py" not in text]
        assert missing == [], f"{page} does not name {missing}"


def test_the_eval_pages_files_load_as_their_commands_read_them(tmp_path: Path) -> None:
    systems = pytest.importorskip("moa_graph.eval.systems")  # the "eval" extra
    suites = pytest.importorskip("moa_graph.eval.suites")
    pages = [ROOT / "docs/guides/eval.md", ROOT / "docs/guides/eval-results.md"]
    loaded = 0
    for block in (
        b for page in pages for b in re.findall(r"```json\n(.*?)```", page.read_text(), re.S)
    ):
        path = tmp_path / f"file{loaded}"
        path.write_text(block)
        if block.count("\n{") > 0:  # one object per line: a jsonl suite
            assert len(suites.load_suite(f"jsonl:{path}").items) == block.count("\n")
        else:
            [(name, _)] = json.loads(block).items()
            [system], _ = systems.parse_systems([f"json:{path}"], {})
            assert system.name == name
        loaded += 1
    assert loaded == 4


def test_every_metric_the_serving_guide_names_is_one_the_server_exports() -> None:
    from prometheus_client import REGISTRY

    import moa_graph.serving.metrics  # noqa: F401  (registers the metrics)

    exported = {sample_name for family in REGISTRY.collect() if family.name.startswith("moa_")
                for sample_name in (family.name, f"{family.name}_total")}  # fmt: skip
    exported |= {f"{name}_{part}" for name in exported for part in ("bucket", "count", "sum")}
    page = (ROOT / "docs/guides/serving.md").read_text()
    named = set(re.findall(r"\b(moa_[a-z_]+)\b", page)) - {"moa_answer", "moa_agent", "moa_graph"}
    assert named and named <= exported, sorted(named - exported)
