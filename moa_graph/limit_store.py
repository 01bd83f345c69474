"""Where ``rpm`` and ``tpm`` are held: this process, an SQLite file, or a Redis server.

Every process that points ``MOA_LIMITS_STORE`` at the same store shares one limit per key, so
``MoAContext.rpm`` and ``tpm`` hold for a whole deployment, however many processes or hosts
send the calls:

- unset (the default): this process alone;
- ``sqlite:PATH``: the processes of one host (``moa-graph serve --workers`` sets one up in a
  private temporary folder); SQLite's own locking makes each step atomic;
- ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``): processes on any hosts, through
  redis-py (the ``serve`` extra); pyrate-limiter's ``RedisStateStore`` runs each step as one
  Lua script. Redis because it is what gateways (LiteLLM's proxy, Envoy's rate-limit service)
  share limits through, with a maintained client and an atomic script per step.

The algorithm is pyrate-limiter's GCRA (a token bucket kept as one timestamp per limit,
github.com/vutran1710/PyrateLimiter); a store only keeps that state, so every store limits
alike. Each state is keyed by the limit's kind, its key and its rate, so a changed setting
starts afresh.
"""

import functools
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from pyrate_limiter import InMemoryStateStore, Rate, StateAlgorithm, StateStore, WallClock
from pyrate_limiter.abstracts.algorithm import Decision, State

from moa_graph.errors import MoAConfigError

__all__ = ["LIMITS_STORE_ENV", "SQLiteStateStore", "store_for"]

LIMITS_STORE_ENV = "MOA_LIMITS_STORE"
"""The store of every limit of this process: unset, ``sqlite:PATH`` or a Redis URL."""


def store_for(name: str) -> StateStore:
    """Return the store of the limit `name` (its kind, key and rate), as ``MOA_LIMITS_STORE`` says.

    Raises:
        MoAConfigError: The setting is neither ``sqlite:PATH`` nor a Redis URL, or redis-py
            is missing for a Redis URL.
    """
    where = os.environ.get(LIMITS_STORE_ENV, "").strip()
    if not where:
        return InMemoryStateStore()
    if where.startswith("sqlite:"):
        return SQLiteStateStore(Path(where.removeprefix("sqlite:")), name)
    if where.startswith(("redis://", "rediss://", "unix://")):
        from pyrate_limiter import RedisStateStore

        return RedisStateStore(_redis(where), f"moa-graph:{name}")
    raise MoAConfigError(
        f"{LIMITS_STORE_ENV}={where!r}: use sqlite:PATH (the processes of one host) or "
        "redis://HOST:PORT/DB (any hosts), or leave it unset (this process alone)"
    )


@functools.cache
def _redis(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise MoAConfigError(
            f"{LIMITS_STORE_ENV}={url!r} needs redis-py: pip install 'moa-graph[serve]'"
        ) from None
    return redis.Redis.from_url(url)  # thread-safe: one connection pool for the process


class SQLiteStateStore(StateStore):
    """A limit's state in one row of an SQLite file, shared by the processes of one host.

    Each step reads, advances and writes the row in one ``BEGIN IMMEDIATE`` transaction, so
    two processes never interleave. The clock is the wall clock, the same in every process.

    Args:
        path: The file (created with its folder when missing).
        key: The limit's row.
    """

    is_async = False
    default_clock = WallClock()

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key
        self._local = threading.local()

    def check(
        self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int
    ) -> Decision:
        """Apply ``algorithm.step`` to the stored state, atomically."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            state = self._state(db, algorithm, rates)
            new_state, decision = algorithm.step(rates, state, now, weight)
            if decision.allowed:
                db.execute(
                    "INSERT INTO limits (key, state) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                    (self.key, json.dumps([str(v) for v in new_state])),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        """Return the stored state (the algorithm's initial one for a new key)."""
        return self._state(self._db(), algorithm, rates)

    def reset(self) -> None:
        """Forget the state."""
        self._db().execute("DELETE FROM limits WHERE key = ?", (self.key,))

    def _state(self, db: sqlite3.Connection, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        row = db.execute("SELECT state FROM limits WHERE key = ?", (self.key,)).fetchone()
        state = algorithm.decode(json.loads(row[0])) if row else algorithm.initial(rates)
        return state if len(state) == len(rates) else algorithm.initial(rates)

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (an sqlite3 connection belongs to one thread)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("CREATE TABLE IF NOT EXISTS limits (key TEXT PRIMARY KEY, state TEXT)")
            self._local.db = db
        return db
