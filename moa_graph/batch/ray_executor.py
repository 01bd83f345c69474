"""Run a batch's rows on Ray async actors: ``moa-graph batch --ray [ADDRESS]``.

The batch driver stays `moa_graph.batch.runner.BatchRunner` (input, resume, records, progress,
manifest); only where a (row, sample) runs changes. Each actor builds the graph from the
settings (a compiled graph and model clients are never shipped) and runs up to `per_actor` pairs
at once on its own event loop, so rows in flight = actors x per-actor. A pair is sent to the
least-loaded actor and awaited; a worker that dies makes error records (``WorkerDied``), which
``--retry-failed`` redoes, and is never retried by Ray (a row that kills its worker would kill
it again: docs/notes.md, "Ray"). Rate limits are split across actors, or shared through one
small bucket actor per limit with ``shared_limits``. ``ray`` is imported only here.

Follows the measured recipe of docs/notes.md, "Ray": Ray Core async actors, not Ray Data;
``RAY_AUTH_MODE`` set before the import; ``address="local"`` unless one is given; Ray's logs
kept off stdout.
"""

import asyncio
import dataclasses
import importlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from langchain_core.rate_limiters import BaseRateLimiter
from langgraph.graph.state import CompiledStateGraph

from moa_graph.batch.records import BatchRecord, error_record, run_pair
from moa_graph.batch.rows import Row
from moa_graph.context import MoAContext
from moa_graph.graph import build_moa_graph
from moa_graph.limits import use_limiter_factory
from moa_graph.usage import Prices

GraphFactory = Callable[[], CompiledStateGraph[Any, Any, Any, Any]]

FORWARDED_ENV = (
    "OPENAI_BASE_URL", "OPENAI_API_BASE", "MOA_LOCAL_BASE_URL", "AWS_DEFAULT_REGION",
    "AWS_REGION", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "LANGSMITH_TRACING", "LANGSMITH_PROJECT",
    "LANGSMITH_ENDPOINT",
)  # fmt: skip
"""Endpoint settings the driver passes to its actors. Keys are not passed (they would be
stored in the cluster's metadata): they belong in the cluster's environment."""


class WorkerDied(RuntimeError):
    """The Ray worker running a pair died or could not be reached."""


class RayPairs:
    """Runs pairs on Ray actors; pass it as ``BatchRunner(executor=...)`` and close it after.

    Args:
        context: The batch's settings; each actor builds its graph from them.
        prices: As `BatchRunner`'s ``prices``.
        address: None or ``"local"`` starts a local cluster; ``"auto"`` or ``"ray://..."``
            joins an existing one. An already initialized Ray (``ray.init`` by the caller) is
            used as it is.
        actors: Actors to start; default the cluster's CPU count.
        per_actor: Pairs each actor runs at once.
        num_cpus: CPUs Ray reserves per actor (the work waits on the network: a fraction).
        shared_limits: One request limiter per ``rpm`` key for the whole cluster (a Ray actor);
            otherwise each actor gets ``rpm``/``tpm`` divided by the number of actors.
        graph_factory: A picklable function returning the compiled graph each actor runs;
            default ``build_moa_graph().compile()``.
        runtime_env: Ray's runtime environment for a cluster this starts (e.g. ``pip`` or
            ``env_vars``).
    """

    def __init__(
        self,
        context: MoAContext,
        prices: Prices | None = None,
        *,
        address: str | None = None,
        actors: int | None = None,
        per_actor: int = 64,
        num_cpus: float = 0.5,
        shared_limits: bool = False,
        graph_factory: GraphFactory | None = None,
        runtime_env: dict[str, Any] | None = None,
    ):
        ray = _import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            ray.init(
                address=address or "local", include_dashboard=False,
                logging_level=logging.ERROR, log_to_driver=False, runtime_env=runtime_env,
            )  # fmt: skip
            self._started = True
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        settings = context if shared_limits else _split_limits(context, count)
        actor = ray.remote(
            num_cpus=num_cpus,
            max_concurrency=per_actor,
            max_restarts=-1,
            max_task_retries=0,
            scheduling_strategy="SPREAD",  # one actor per node before two on one
        )(PairActor)
        forwarded = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        actor = actor.options(runtime_env={"env_vars": forwarded}) if forwarded else actor
        self._actors = [
            actor.remote(settings, prices, shared_limits, graph_factory) for _ in range(count)
        ]
        self._load = [0] * count

    async def run(self, row: Row, sample: int, key: str) -> BatchRecord:
        """Run one pair on the least-loaded actor; a dead worker makes an error record."""
        index = min(range(len(self._load)), key=self._load.__getitem__)
        self._load[index] += 1
        start = time.perf_counter()
        try:
            record: BatchRecord = await self._actors[index].run.remote(row, sample, key)
            return record
        except self._ray.exceptions.RayError as exc:
            died = WorkerDied(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            return error_record(row, sample, key, died, round(time.perf_counter() - start, 3))
        finally:
            self._load[index] -= 1

    def nodes(self, timeout_s: float = 120.0) -> list[str]:
        """Return the Ray node id each actor runs on (an actor restarted elsewhere moves).

        The question is asked again while an actor is restarting (it is idempotent, unlike a
        row's pair, which runs at most once), so a lost node's actor answers from where Ray
        restarted it. Raises ``ray.exceptions.GetTimeoutError`` after ``timeout_s`` seconds
        (default 120) if an actor has not come back, e.g. no node has room for it.
        """
        asked = [actor.node.options(max_task_retries=-1).remote() for actor in self._actors]
        ids: list[str] = self._ray.get(asked, timeout=timeout_s)
        return ids

    def close(self) -> None:
        """Stop the actors, and the cluster if this started it."""
        for actor in self._actors:
            self._ray.kill(actor)
        if self._started:
            self._ray.shutdown()


class PairActor:
    """A Ray actor (made remote by `RayPairs`) that runs pairs with its own graph."""

    def __init__(
        self,
        context: MoAContext,
        prices: Prices | None,
        shared_limits: bool,
        graph_factory: GraphFactory | None,
    ):
        if shared_limits:
            use_limiter_factory(SharedRateLimiter)
        self.context, self.prices = context, prices
        self.graph = graph_factory() if graph_factory else build_moa_graph().compile(name="moa")

    async def run(self, row: Row, sample: int, key: str) -> BatchRecord:
        """Run one pair and return its record."""
        return await run_pair(self.graph, self.context, self.prices, row, sample, key)

    async def node(self) -> str:
        """The id of the Ray node this actor runs on."""
        node_id: str = _import_ray().get_runtime_context().get_node_id()
        return node_id


class RateBucket:
    """A Ray actor handing out request times at `per_minute` for the whole cluster."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self.next = time.monotonic()

    def reserve(self) -> float:
        """Book the next slot; return the seconds the caller waits for it."""
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        return slot - now


class SharedRateLimiter(BaseRateLimiter):
    """LangChain's rate-limiter interface over one named `RateBucket` actor per limit key."""

    def __init__(self, key: str, per_minute: float):
        ray = _import_ray()
        bucket = ray.remote(num_cpus=0)(RateBucket)
        self.bucket: Any = bucket.options(
            name=f"moa-graph-rate:{key}:{per_minute:g}", get_if_exists=True
        ).remote(per_minute)

    def acquire(self, *, blocking: bool = True) -> bool:
        """Wait for this process's next slot of the shared rate."""
        time.sleep(_import_ray().get(self.bucket.reserve.remote()))
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Wait for this process's next slot of the shared rate (async)."""
        await asyncio.sleep(await self.bucket.reserve.remote())
        return True


def _import_ray() -> Any:
    """Import Ray (typed loosely: its stubs do not cover actor classes)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # before the import, or it warns
    return importlib.import_module("ray")


def _split_limits(context: MoAContext, actors: int) -> MoAContext:
    """Each actor's share of the rate limits."""
    return dataclasses.replace(
        context,
        rpm={k: v / actors for k, v in context.rpm.items()},
        tpm={k: max(1, math.floor(v / actors)) for k, v in context.tpm.items()},
    )
