"""The Mixture-of-Agents algorithm between model calls: references, quorum, seeds, records.

Follows Wang et al., "Mixture-of-Agents Enhances Large Language Model Capabilities"
(arXiv 2406.04692, section 2.2) and its reference implementation, togethercomputer/MoA
``utils.py``: a later-layer proposer or the aggregator gets the conversation with the previous
layer's successful answers as references. Unlike that implementation, failed calls never reach
a prompt: they are records with an error. The graph's nodes (`moa_graph.nodes`,
`moa_graph.answer_nodes`) call these functions; the prompt layout is in
`moa_graph.references`, the aggregator's modes in `moa_graph.aggregation`, reading a finished
run in `moa_graph.run_summary`.
"""

import hashlib
import json
import random
import secrets
from collections.abc import Iterable, Sequence

from moa_graph.agreement import Candidate, agreed_answer
from moa_graph.errors import ProposerQuorumError
from moa_graph.spec import ModelSpec
from moa_graph.state import FIRST_STAGE, Proposal, Review

_FAILED = ("failed", "timeout")
"""Statuses of calls that did not answer; ``cancelled`` (cut off by ``first_k``) is not one."""

SEED_RANGE = 2**31
"""Seeds are drawn from [0, 2**31): every OpenAI-compatible server takes a 32-bit int."""


def call_seed(seed: int | None, layer: int, spec: int, sample: int) -> int:
    """Return the seed of one model call.

    Args:
        seed: ``MoAContext.seed``. None draws a fresh random seed; an integer makes the result
            a fixed function of (seed, layer, spec, sample), so a run repeats where the
            provider honours seeds.
        layer: 1-based layer (the aggregator is layer ``rounds + 1``).
        spec: 0-based position of the spec in its layer.
        sample: 0-based sample of the spec (for the aggregator, its call number).

    Returns:
        An integer in [0, 2**31).
    """
    if seed is None:
        return secrets.randbelow(SEED_RANGE)
    digest = hashlib.sha256(f"moa-graph:{seed}:{layer}:{spec}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def reused_first_stage(
    proposals: Sequence[Proposal], first_stage: Sequence[ModelSpec], layer: Sequence[ModelSpec]
) -> list[Proposal]:
    """Return layer-1 records that repeat a cascade's first-stage answers where shapes match.

    After a cascade escalates, a first-stage answer stands for a layer-1 call of the same
    model with the same settings (the specs equal apart from ``n``, ``label`` and
    ``timeout_s``): it is a sample of the same distribution, so asking again would pay for
    the same kind of answer twice. Each answer stands for one call, the first calls of each
    matching spec first; the layer asks the rest. Failed first-stage calls are not reused.

    Args:
        proposals: This turn's records (the first stage is layer `FIRST_STAGE`).
        first_stage: ``MoAContext.proposer_specs(FIRST_STAGE)``.
        layer: ``MoAContext.proposer_specs(1)``.

    Returns:
        One record per reused answer, with ``layer`` 1, the call's ``index``, ``sample`` and
        label, ``reused_from`` the first-stage ``index``, ``usage`` None and ``latency_s`` 0
        (counted once, on the first-stage record).
    """
    unused: dict[tuple[object, ...], list[Proposal]] = {}
    for p in proposals:
        if p["layer"] == FIRST_STAGE and p["status"] == "ok":
            unused.setdefault(_call_shape(first_stage[_spec_of(p, first_stage)]), []).append(p)
    reused: list[Proposal] = []
    index = 0
    for spec in layer:
        answers = unused.get(_call_shape(spec), [])
        for sample in range(spec.n):
            if answers:
                source = answers.pop(0)
                reused.append(
                    Proposal(
                        **{
                            **source,
                            "layer": 1, "index": index, "model": spec.name, "sample": sample,
                            "usage": None, "latency_s": 0.0, "selected": False,
                            "reused_from": source["index"],
                        }
                    )
                )  # fmt: skip
            index += 1
    return reused


def _call_shape(spec: ModelSpec) -> tuple[object, ...]:
    """What decides a call's answers: the spec without its sample count, label and timeout."""
    return (
        spec.model, spec.temperature, spec.max_tokens, spec.system_prompt,
        json.dumps(spec.model_kwargs, sort_keys=True, default=str),
    )  # fmt: skip


def _spec_of(proposal: Proposal, specs: Sequence[ModelSpec]) -> int:
    """The position in `specs` of the spec that made `proposal` (its samples are in a row)."""
    start = 0
    for i, spec in enumerate(specs):
        if proposal["index"] < start + spec.n:
            return i
        start += spec.n
    raise ValueError(f"proposal index {proposal['index']} is past the specs' {start} calls")


def reference_rng(seed: int | None, layer: int) -> random.Random:
    """Return the source of a layer's reference order: fixed by ``MoAContext.seed``, else random."""
    return random.Random(None if seed is None else call_seed(seed, layer, -1, 0))


def first_stage_agreement(
    proposals: Sequence[Proposal], pattern: str | None, share: float
) -> Candidate | None:
    """Return the answer enough of a cascade's first stage agree on, or None to escalate.

    Args:
        proposals: This turn's records.
        pattern: ``MoAContext.answer_pattern`` (see `moa_graph.agreement`).
        share: ``MoAContext.cascade_agreement``.
    """
    return agreed_answer(aggregator_candidates(proposals, FIRST_STAGE, None), pattern, share)


def layer_references(proposals: Sequence[Proposal], layer: int) -> list[str]:
    """Return the answers of the successful proposers of `layer`, in order."""
    return [p["content"] for p in proposals if p["layer"] == layer and p["content"] is not None]


def aggregator_candidates(
    proposals: Sequence[Proposal], layer: int, review: Review | None
) -> list[Candidate]:
    """Return what the aggregator may use: the last layer's answers, as a reviewer left them.

    Args:
        proposals: This turn's records.
        layer: The last proposer layer.
        review: The reviewer's decision (kept indices and edited texts), or None for all.
    """
    answered = {
        p["index"]: p for p in proposals if p["layer"] == layer and p["content"] is not None
    }
    if review is None:
        return [_candidate(p) for p in answered.values()]
    return [
        _candidate(answered[i], review["edited"].get(str(i)))
        for i in review["kept"]
        if i in answered
    ]


def _candidate(proposal: Proposal, edited: str | None = None) -> Candidate:
    """A proposal as the aggregator sees it; a reviewer's edit replaces its text and calls."""
    if edited is not None:
        return Candidate(proposal["index"], edited)
    calls = tuple(proposal.get("tool_calls", ()))
    return Candidate(proposal["index"], proposal["content"] or "", calls)


def check_quorum(
    proposals: Sequence[Proposal], layer: int, min_proposals: int, *, every: bool = False
) -> None:
    """Raise unless at least `min_proposals` proposers of `layer` answered.

    Args:
        proposals: The turn's records.
        layer: The 1-based layer to check.
        min_proposals: The fewest answers the run goes on with.
        every: Every call of the layer must answer (``on_fewer_proposals="fail"``), except
            those cut off by ``first_k``.

    Raises:
        ProposerQuorumError: Too few answers; it names every failed model and its error
            (proposals cut off by ``first_k`` are not failures and are not named).
    """
    records = [p for p in proposals if p["layer"] == layer]
    succeeded = sum(p["status"] == "ok" for p in records)
    failures = [(p["model"], p["error"] or "") for p in records if p["status"] in _FAILED]
    rule = None
    if every and failures:
        min_proposals, rule = succeeded + len(failures), "on_fewer_proposals is 'fail'"
    if succeeded < min_proposals:
        raise ProposerQuorumError(
            layer, min_proposals, succeeded, failures, list(proposals), rule=rule
        )


def mark_selected(
    proposals: Sequence[Proposal], last_layer: int, used: Iterable[int]
) -> list[Proposal]:
    """Return copies of `proposals` with ``selected`` set.

    A proposal of an earlier layer is selected when it answered (it was a reference of the
    next layer); one of `last_layer` when its ``index`` is in `used` (the aggregation used it).
    A cascade's first stage (`FIRST_STAGE`) is never a reference: after an escalation it is
    not selected.
    """
    used = set(used)
    return [
        Proposal(
            **{
                **p,
                "selected": p["status"] == "ok"
                and (p["index"] in used if p["layer"] == last_layer else p["layer"] > FIRST_STAGE),
            }
        )
        for p in proposals
    ]
