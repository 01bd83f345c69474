"""Errors moa-graph raises, so callers can tell bad settings from failed runs."""

from typing import Any


class MoAConfigError(ValueError):
    """Settings are invalid or a model cannot be created; raised before any model is called.

    The message names the field (or environment variable) and how to fix it. The CLI exits
    with status 2 on this error.
    """


class MissingCredentials(MoAConfigError):
    """A hosted provider's credentials (or region) are not set: the model cannot be created.

    With ``MoAContext.skip_unavailable`` such a proposer is left out and recorded instead.
    """


class ProposerQuorumError(RuntimeError):
    """Fewer proposers than `min_proposals` answered in a layer.

    With ``on_fewer_proposals="fail"``: not every one (calls cut off by ``first_k`` aside).

    Attributes:
        layer: The 1-based layer that failed.
        failures: `(model, error)` pairs for every proposer of that layer that failed.
        records: The `Proposal` records of the run so far (the failed layer's included), so
            that the work of the proposers that answered is not lost.
    """

    def __init__(
        self,
        layer: int,
        needed: int,
        succeeded: int,
        failures: list[tuple[str, str]],
        records: list[Any] | None = None,
        rule: str | None = None,
    ):
        self.layer = layer
        self.failures = failures
        self.records = records or []
        detail = "; ".join(f"{model}: {error}" for model, error in failures)
        super().__init__(
            f"layer {layer}: {succeeded} of {succeeded + len(failures)} proposers answered, "
            f"{rule or f'min_proposals is {needed}'}. Failed: {detail}"
        )


class AggregatorError(RuntimeError):
    """The aggregator's call failed (after its retries) or returned no text.

    Attributes:
        model: The aggregator's label.
        records: The run's `Proposal` records, so that the proposers' work is not lost.
    """

    def __init__(self, model: str, reason: str, records: list[Any]):
        self.model = model
        self.records = records
        super().__init__(f"aggregator {model}: {reason}")


class AnswerDoesNotFit(ValueError):
    """An answer made no call of its schema's tool, or its object does not fit the schema."""


class DegradedAnswer(UserWarning):
    """An answer was made from fewer proposals than asked for: some proposers failed.

    Warned (Python's ``warnings``, shown once per place by default) when a run answers with
    ``on_fewer_proposals="answer"`` after failures; the records say which calls failed and
    why, and ChatMoA's ``response_metadata["degraded"]`` is True.
    """


class LocalModelError(RuntimeError):
    """The embedded model server could not be started; the message ends with its last log lines."""


class StructuredOutputError(ValueError):
    """A structured answer did not fit its schema (`moa_graph.ChatMoA.with_structured_output`).

    Attributes:
        raw: The reply that did not fit (an `AIMessage`; its tool call holds the arguments).
        records: The run's records from the reply's ``response_metadata``: ``aggregation`` and
            ``proposals`` (model, status, tokens, latency of each), so the work is not lost.
    """

    def __init__(self, message: str, raw: Any, records: dict[str, Any]):
        super().__init__(message)
        self.raw = raw
        self.records = records
