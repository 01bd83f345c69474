"""What happens around one model call: admission (rates, server capacity) and retries.

Admission waits for a request slot (``MoAContext.rpm``: requests spread evenly, at most that
many in any minute), a token budget (``MoAContext.tpm``: a bucket of one minute's tokens,
refilling continuously; a call is charged its estimate up front, as OpenAI counts
``max_tokens`` against the limit) and, for the embedded model, a free server slot (it answers
one request at a time). Both limits are pyrate-limiter's GCRA, held where
``MOA_LIMITS_STORE`` says (`moa_graph.limit_store`: this process, or one store for every
process of a deployment). A call's timeout starts only
once it is admitted, so time queued behind moa-graph's own limits never counts as call time
(docs/notes.md, "Capacity, not calls": the embedded server's failures under load were
capacity, not calls).

Retries (``MoAContext.retries``) use tenacity, the library behind LangChain's ``with_retry``,
with exponential backoff and jitter, honouring a 429's ``Retry-After``; only rate limits,
server errors, connection errors and timeouts are retried, never 400-class errors such as a
context overflow. Spec-built OpenAI-compatible and Bedrock models are created with their
SDK's own retries off, so retries never multiply.
"""

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.rate_limiters import BaseRateLimiter
from pyrate_limiter import GCRA, InMemoryStateStore, Rate, StateStore
from tenacity import RetryCallState, wait_exponential_jitter

from moa_graph.limit_store import store_for
from moa_graph.state import Usage

LOCAL_SERVER_SLOTS = 1
"""Requests the embedded llama.cpp server runs at once (it serves them one after another)."""

_RETRY_STATUS = {408, 409, 429}
_RETRY_NAMES = {
    "APIConnectionError", "APITimeoutError", "ConnectError", "ConnectTimeout", "ReadTimeout",
    "RemoteProtocolError", "ThrottlingException", "ServiceUnavailableException",
    "InternalServerException", "ModelNotReadyException", "EndpointConnectionError",
}  # fmt: skip
_backoff = wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)
_GCRA = GCRA()


def is_retryable(error: BaseException) -> bool:
    """Return True for errors worth another attempt: timeouts, 429, 5xx, lost connections."""
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status in _RETRY_STATUS or status >= 500
    code = getattr(error, "response", None)
    if isinstance(code, dict):  # botocore's ClientError
        name = code.get("Error", {}).get("Code", "")
        return bool(name in _RETRY_NAMES)
    return type(error).__name__ in _RETRY_NAMES


def retry_wait(state: RetryCallState) -> float:
    """Seconds before the next attempt: a 429's ``Retry-After`` if given, else backoff."""
    error = state.outcome.exception() if state.outcome else None
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return min(float(headers.get("retry-after", "")), 60.0)
        except ValueError:
            pass
    return float(_backoff(state))


class Gcra:
    """One limit: `per_minute` units a minute, at most `burst` at once (pyrate-limiter's GCRA).

    Args:
        store: Where its state is held (`moa_graph.limit_store.store_for`).
        per_minute: Units (requests or tokens) a minute, > 0; fractions are kept.
        burst: Units that may go at once: 1 spreads them evenly.
    """

    def __init__(self, store: StateStore, per_minute: float, burst: int):
        scale = 1 if float(per_minute).is_integer() else 1000  # Rate takes whole numbers
        self._rates = [Rate(round(per_minute * scale), 60_000 * scale, burst=max(1, burst))]
        self._store = store
        self._local = isinstance(store, InMemoryStateStore)
        self.burst = max(1, burst)

    def take(self, units: int) -> float:
        """Take `units` (at most `burst`) and return 0, or return seconds to wait and retry."""
        now = self._store.default_clock.now()
        assert isinstance(now, int)  # the stores' clocks are sync
        decision = self._store.check(_GCRA, self._rates, now, min(units, self.burst))
        if decision.allowed:  # type: ignore[union-attr]
            return 0.0
        return max(0.005, (decision.retry_after_ms or 50) / 1000)  # type: ignore[union-attr]

    async def atake(self, units: int) -> float:
        """`take`, off the event loop when the store is shared (a file lock, a network call)."""
        return self.take(units) if self._local else await asyncio.to_thread(self.take, units)


class RequestLimiter(BaseRateLimiter):
    """``rpm`` as LangChain's rate limiter interface: one request at a time, spread evenly."""

    def __init__(self, gcra: Gcra):
        self._gcra = gcra

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take one request slot, waiting for it unless `blocking` is False."""
        while (wait := self._gcra.take(1)) > 0:
            if not blocking:
                return False
            time.sleep(wait)
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Take one request slot without blocking the event loop."""
        while (wait := await self._gcra.atake(1)) > 0:
            if not blocking:
                return False
            await asyncio.sleep(wait)
        return True


class TokenBudget:
    """``tpm``: a bucket of `per_minute` tokens (input + output) refilling continuously.

    A call is charged its estimate before it starts; what a call used beyond its estimate is
    charged with the next reservation (never refunded: OpenAI counts ``max_tokens`` against
    its limit too). A call larger than the whole budget is charged the budget.
    """

    def __init__(self, per_minute: int, store: StateStore | None = None):
        self.per_minute = per_minute
        self._gcra = Gcra(store or InMemoryStateStore(), per_minute, burst=per_minute)
        self._owed = 0
        self._lock = threading.Lock()

    def try_reserve(self, tokens: int) -> float:
        """Charge `tokens` and return 0, or return the seconds to wait before trying again."""
        owed = self._claim_owed()
        return self._settle_claim(owed, self._gcra.take(tokens + owed))

    async def atry_reserve(self, tokens: int) -> float:
        """`try_reserve` without blocking the event loop."""
        owed = self._claim_owed()
        return self._settle_claim(owed, await self._gcra.atake(tokens + owed))

    def _claim_owed(self) -> int:
        """Take what is owed, so that two reservations at once never both charge it."""
        with self._lock:
            owed, self._owed = self._owed, 0
        return owed

    def _settle_claim(self, owed: int, wait: float) -> float:
        """Give back the claimed debt when the reservation must wait; return the wait."""
        if wait > 0 and owed:
            with self._lock:
                self._owed += owed
        return wait

    def settle(self, estimated: int, actual: int) -> None:
        """Owe what a call used beyond its estimate, to be charged with the next reservation."""
        if actual > estimated:
            with self._lock:
                self._owed += actual - estimated


@dataclass(frozen=True)
class Admission:
    """What a call must get before it starts; every part optional.

    Attributes:
        requests: The request-rate limiter shared by every model under the same limit key.
        tokens: The token budget shared likewise.
        server: Key of the embedded server the call goes to (capacity `LOCAL_SERVER_SLOTS`).
        max_tokens: The call's output limit, for the token estimate.
    """

    requests: BaseRateLimiter | None = None
    tokens: TokenBudget | None = None
    server: str | None = None
    max_tokens: int = 0

    def estimate(self, prompt_chars: int) -> int:
        """Tokens a call may use: about 4 characters a token in, plus `max_tokens` out."""
        return prompt_chars // 4 + self.max_tokens

    async def aenter(self, prompt_chars: int) -> tuple[int, "asyncio.Semaphore | None"]:
        """Wait until the call may start; return its token reservation and server slot."""
        _waiting(1)
        try:
            if self.requests is not None:
                await self.requests.aacquire()
            reserved = await self._areserve(prompt_chars)
            slot = _server_slot(self.server) if self.server else None
            if slot is not None:
                await slot.acquire()
        finally:
            _waiting(-1)
        return reserved, slot

    def enter(self, prompt_chars: int) -> tuple[int, threading.Semaphore | None]:
        """Block until the call may start (sync form of `aenter`)."""
        _waiting(1)
        try:
            if self.requests is not None:
                self.requests.acquire()
            reserved = 0
            if self.tokens is not None:
                reserved = self.estimate(prompt_chars)
                while (wait := self.tokens.try_reserve(reserved)) > 0:
                    time.sleep(wait)
            slot = _sync_server_slot(self.server) if self.server else None
            if slot is not None:
                slot.acquire()
        finally:
            _waiting(-1)
        return reserved, slot

    def settle(self, reserved: int, usage: "Usage | None") -> None:
        """Correct the token budget with the call's reported usage."""
        if self.tokens is not None and usage is not None:
            self.tokens.settle(reserved, usage["input_tokens"] + usage["output_tokens"])

    async def _areserve(self, prompt_chars: int) -> int:
        if self.tokens is None:
            return 0
        reserved = self.estimate(prompt_chars)
        while (wait := await self.tokens.atry_reserve(reserved)) > 0:
            await asyncio.sleep(wait)
        return reserved


def request_limiter(key: str, per_minute: float) -> BaseRateLimiter:
    """The request limiter of `key`: `per_minute` requests spread evenly.

    Held where ``MOA_LIMITS_STORE`` says (`moa_graph.limit_store`).
    """
    return RequestLimiter(Gcra(store_for(f"rpm:{key}:{per_minute:g}"), per_minute, burst=1))


LimiterFactory = Callable[[str, float], BaseRateLimiter]
_limiter_factory: LimiterFactory = request_limiter
_limiters: dict[tuple[str, float], BaseRateLimiter] = {}
_budgets: dict[tuple[str, int], TokenBudget] = {}
_LoopSlots = dict[str, asyncio.Semaphore]
_async_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSlots]" = (
    weakref.WeakKeyDictionary()
)
_sync_slots: dict[str, threading.Semaphore] = {}
_registry_lock = threading.Lock()
_waiting: Callable[[int], None] = lambda change: None  # noqa: E731


def admission_for(
    model: str, *, rpm: Mapping[str, float], tpm: Mapping[str, int], server: str | None,
    max_tokens: int,
) -> Admission | None:  # fmt: skip
    """Return the admission of a spec-built call, or None when nothing limits it.

    A limit keyed by the whole model text (``"openai:gpt-4o"``) wins over one keyed by its
    provider (``"openai"``); every model under the same key shares one limiter: in this
    process, or in every process that uses the same ``MOA_LIMITS_STORE``.

    Args:
        model: The spec's model text.
        rpm: ``MoAContext.rpm``: requests per minute by model text or provider.
        tpm: ``MoAContext.tpm``: tokens per minute likewise.
        server: The embedded server's base URL for ``local:`` models, else None.
        max_tokens: The call's output limit.
    """
    provider = model.split(":", 1)[0]
    rate_key = model if model in rpm else provider if provider in rpm else None
    token_key = model if model in tpm else provider if provider in tpm else None
    if rate_key is None and token_key is None and server is None:
        return None
    with _registry_lock:
        requests = None
        if rate_key is not None:
            per_minute = float(rpm[rate_key])
            requests = _limiters.get((rate_key, per_minute))
            if requests is None:
                requests = _limiters[(rate_key, per_minute)] = _limiter_factory(
                    rate_key, per_minute
                )
        tokens = None
        if token_key is not None:
            budget = int(tpm[token_key])
            tokens = _budgets.get((token_key, budget))
            if tokens is None:
                store = store_for(f"tpm:{token_key}:{budget}")
                tokens = _budgets[(token_key, budget)] = TokenBudget(budget, store)
    return Admission(requests=requests, tokens=tokens, server=server, max_tokens=max_tokens)


def observe_waiting(observer: Callable[[int], None]) -> None:
    """Call `observer` with +1 when a call starts waiting for admission, -1 when it ends.

    The serving metrics' ``moa_model_calls_waiting`` counts them.
    """
    global _waiting
    _waiting = observer


def use_limiter_factory(factory: LimiterFactory) -> None:
    """Make request limiters with `factory(key, per_minute)` from now on in this process.

    Ray workers use it to share one limiter per key across a cluster
    (`moa_graph.batch.ray_executor`).
    """
    global _limiter_factory
    with _registry_lock:
        _limiter_factory = factory
        _limiters.clear()


def _server_slot(server: str) -> asyncio.Semaphore:
    # An asyncio.Semaphore belongs to one event loop: one set of slots per loop.
    with _registry_lock:
        slots = _async_slots.setdefault(asyncio.get_running_loop(), {})
        return slots.setdefault(server, asyncio.Semaphore(LOCAL_SERVER_SLOTS))


def _sync_server_slot(server: str) -> threading.Semaphore:
    with _registry_lock:
        return _sync_slots.setdefault(server, threading.Semaphore(LOCAL_SERVER_SLOTS))


def release(slot: Any) -> None:
    """Give back a server slot taken by `Admission.aenter` or `Admission.enter` (None: none)."""
    if slot is not None:
        slot.release()
