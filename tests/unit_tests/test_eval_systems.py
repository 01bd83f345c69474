"""The systems an evaluation compares: presets, singles, best single, files."""

import json
import re
from pathlib import Path

import pytest

from moa_graph import MoAConfigError
from moa_graph.eval.systems import parse_systems


def test_systems_presets_singles_best_single_and_files(tmp_path: Path) -> None:
    base = {"proposers": ["openai:a", "openai:b", "openai:a"], "aggregator": "openai:c"}
    named = tmp_path / "systems.json"
    named.write_text(json.dumps({"mine": {"preset": "usc", "rounds": 2}, "raw": {"rounds": 3}}))
    systems, best = parse_systems(
        ["self-moa", "single:openai:a temperature=0.7", "best-single", f"json:{named}"], base
    )
    by_name = {s.name: s for s in systems}
    assert best
    assert list(by_name) == [
        "self-moa", "single:openai:a temperature=0.7", "single:openai:a", "single:openai:b",
        "mine", "raw",
    ]  # fmt: skip
    [self_moa] = by_name["self-moa"].context.proposer_specs(1)
    assert (self_moa.model, self_moa.n) == ("openai:a", 6)  # the first proposer, k = 6
    sampled = by_name["single:openai:a temperature=0.7"]
    assert sampled.single and sampled.context.proposer_specs(1)[0].temperature == 0.7
    assert by_name["single:openai:b"].context.proposer_specs(1)[0].temperature == 0.0
    assert by_name["mine"].context.aggregator_mode == "select"
    assert by_name["mine"].context.rounds == 2 and by_name["raw"].context.rounds == 3
    for names, message in [
        (["nope"], "system 'nope' is unknown"),
        (["vote", "vote"], "named twice"),
        (["single:openai:a n=3"], "for samples use self-moa or vote"),
        ([f"json:{tmp_path / 'none.json'}"], "cannot read"),
    ]:
        with pytest.raises(MoAConfigError, match=re.escape(message)):
            parse_systems(names, base)


def test_best_single_runs_each_proposer_as_configured_once_and_greedy() -> None:
    role = {"model": "openai:a", "n": 3, "temperature": 1.0, "system_prompt": "Be brief.",
            "label": "brief-a", "max_tokens": 50}  # fmt: skip
    systems, best = parse_systems(["best-single", "vote"], {"proposers": [role, "openai:b"]})
    assert best and [s.name for s in systems] == ["single:brief-a", "single:openai:b", "vote"]
    [alone] = systems[0].context.proposer_specs(1)
    assert (alone.n, alone.temperature, alone.system_prompt, alone.max_tokens) == (
        1, 0.0, "Be brief.", 50,
    )  # fmt: skip
