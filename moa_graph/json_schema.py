"""JSON Schemas as data: checked whole before use, validated without fetching, under a deadline.

Every JSON Schema the project compiles or validates goes through here: a request's
``response_format`` and tool parameters (`moa_graph.trust.RequestPolicy.check_schema`), a
structured answer (`moa_graph.structured`), ``moa-graph batch --schema``. A schema is never an
instruction to fetch, read or stall:

- `check_document` walks the whole JSON value (data keywords and unknown keys included) and
  refuses ``$dynamicRef``, ``$recursiveRef``, a ``$ref`` outside the document, an ``$id`` other
  than a fragment, and a ``$schema`` other than a standard dialect; it refuses reference cycles
  that stay at one place of the instance (through ``$ref``, ``allOf``, ``anyOf``, ``oneOf``,
  ``not``, ``if``/``then``/``else``, ``dependentSchemas``), bounds what one place expands to,
  and compiles every ``pattern`` with RE2. Recursion through ``properties`` or ``items`` (a
  tree; a recursive Pydantic model) is accepted, as OpenAI accepts it.
- `validator` is Draft 2020-12 with the `referencing` library's empty registry (nothing is
  retrieved; jsonschema's default registry would fetch any unknown URI with ``urlopen``) and
  ``pattern`` matched by RE2, a linear-time engine (Python's ``re`` backtracks: ``(a+)+$`` on
  26 characters takes seconds). ``patternProperties`` stays refused: jsonschema matches it with
  ``re`` in several keywords.
- `first_error` validates under a CPU deadline checked inside the validator, so the work stops
  (`SchemaTooCostly`) wherever it runs.

__all__ = [
    "SchemaRefused",
    "SchemaTooCostly",
    "check_document",
    "first_error",
    "validator",
]


Sources: JSON Schema 2020-12 Core, sections 8.2 (``$id``, ``$anchor``, ``$dynamicRef``) and
10.2 (in-place applicators), https://json-schema.org/draft/2020-12/json-schema-core; RE2,
https://github.com/google/re2.
"""

import functools
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast
from urllib.parse import unquote

import jsonschema
import re2
import referencing
import referencing.jsonschema
from jsonschema import ValidationError, validators
from jsonschema.protocols import Validator

MAX_PATTERN_CHARS = 1000
"""Most characters of one ``pattern``."""

MAX_IN_PLACE_CHAIN = 256
"""Most references and in-place keywords followed one inside another at one place."""

IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
IN_PLACE_ONE = ("not", "if", "then", "else")
REFUSED_KEYS = {
    "$dynamicRef": "a dynamic reference is resolved at validation time, possibly remotely",
    "$recursiveRef": "a recursive reference is resolved at validation time, possibly remotely",
    "patternProperties": "patternProperties is matched with Python's re, which can backtrack "
    "for hours; use properties, or pattern on propertyNames",
}
_ONE_SCHEMA = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedProperties", "unevaluatedItems", "additionalItems",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


class SchemaRefused(ValueError):
    """A schema holds what the project never follows, or costs too much to use.

    Attributes:
        where: Where in the schema, as a path (``.properties.a.$ref``; empty: the whole).
        bound: The argument of `check_document` that was exceeded (``max_depth``,
            ``max_nodes``), or None when the schema holds something refused outright.
    """

    def __init__(self, where: str, message: str, bound: str | None = None):
        super().__init__(message)
        self.where = where
        self.bound = bound


class SchemaTooCostly(RuntimeError):
    """Validating one value took more CPU than its deadline allowed; the work was stopped."""


def check_document(schema: Mapping[str, Any], *, max_depth: int, max_nodes: int) -> None:
    """Refuse a schema that would fetch, loop in place or expand past `max_nodes` (no I/O).

    Args:
        schema: The JSON Schema (an object).
        max_depth: Most nested schema levels (the schema itself is 1); any JSON value inside
            it may nest at most four times as deep.
        max_nodes: Most schemas one place of an instance may be checked against, counting
            every in-place applicator and reference (e.g. 10,000).

    Raises:
        SchemaRefused: What is refused, and where.
    """
    _check_values(schema, max_json_depth=4 * max_depth)
    for where, depth, sub in subschemas(schema):
        if depth > max_depth:
            raise SchemaRefused(
                where, f"is {depth} schema levels deep, over {max_depth}", "max_depth"
            )
        if "pattern" in sub:
            _compile_checked(f"{where}.pattern", sub["pattern"])
    _check_in_place(schema, max_nodes)


def subschemas(
    schema: Mapping[str, Any], where: str = "", depth: int = 1
) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    """Yield every schema object inside `schema` (itself first) with its path and depth.

    The path is like ``.properties.a.items``; the depth counts schema levels (`schema` is 1).
    Values that are data, not schemas (``enum``, ``const``, ``default``, ``examples``), are
    not walked; boolean schemas have nothing inside.
    """
    yield where, depth, schema
    for keyword, value in schema.items():
        inner: list[tuple[str, Any]] = []
        if keyword in _ONE_SCHEMA and isinstance(value, Mapping):
            inner = [("", value)]
        elif keyword in (*_ONE_SCHEMA, *_SCHEMA_LISTS) and isinstance(value, list):
            # draft-4 tuple "items" is a list too
            inner = [(f".{i}", v) for i, v in enumerate(value)]
        elif keyword in _SCHEMA_MAPS and isinstance(value, Mapping):
            inner = [(f".{name}", v) for name, v in value.items()]
        for suffix, sub in inner:
            if isinstance(sub, Mapping):
                yield from subschemas(sub, f"{where}.{keyword}{suffix}", depth + 1)


def validator(schema: Mapping[str, Any]) -> Validator:
    """Return a Draft 2020-12 validator of `schema` that retrieves nothing.

    Raises:
        jsonschema.SchemaError: `schema` is not a valid JSON Schema.
    """
    _Validator.check_schema(schema)
    return cast(Validator, _Validator(schema, registry=referencing.Registry()))


def first_error(
    value: Any, schema: Mapping[str, Any], *, cpu_s: float = 1.0
) -> ValidationError | None:
    """Return the most relevant error of `value` against `schema`, or None when it fits.

    Args:
        value: The instance.
        schema: A valid JSON Schema (checked by `validator` or `check_document` before).
        cpu_s: Most seconds of this thread's CPU time the validation may take.

    Raises:
        SchemaTooCostly: The deadline passed; the validation stopped there.
    """
    checker = _Validator(schema, registry=referencing.Registry())
    _clock.deadline = time.thread_time() + cpu_s
    try:
        error: ValidationError | None = jsonschema.exceptions.best_match(checker.iter_errors(value))
        return error
    finally:
        _clock.deadline = None


def _check_values(schema: Mapping[str, Any], *, max_json_depth: int) -> None:
    """Walk the whole JSON value: keys that fetch or redirect anywhere, and the nesting."""
    stack: list[tuple[Any, str, int]] = [(schema, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > max_json_depth:
            raise SchemaRefused(
                where, f"nests {depth} JSON levels deep, over {max_json_depth}", "max_depth"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                _check_key(f"{where}.{key}", key, item)
                stack.append((item, f"{where}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}", depth + 1) for i, item in enumerate(value))


def _check_key(where: str, key: str, value: Any) -> None:
    if key in REFUSED_KEYS:
        raise SchemaRefused(where, REFUSED_KEYS[key])
    if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
        raise SchemaRefused(where, f"{value!r}: a schema may refer only to itself ('#...')")
    if key == "$id" and not (isinstance(value, str) and value.startswith("#")):
        raise SchemaRefused(where, f"{value!r}: an $id other than a fragment changes where "
                                   "references point; leave it out")  # fmt: skip
    if key == "$schema" and not _is_dialect(value):
        raise SchemaRefused(where, f"{value!r} is not a standard JSON Schema dialect URI")


def _is_dialect(uri: object) -> bool:
    if not isinstance(uri, str):
        return False
    try:
        referencing.jsonschema.specification_with(uri)
    except referencing.jsonschema.UnknownDialect:
        return False
    return True


def _check_in_place(schema: Mapping[str, Any], max_nodes: int) -> None:
    """Refuse in-place reference cycles, and a place that expands past `max_nodes` schemas."""
    anchors = _anchors(schema)
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: Any, where: str) -> int:
        if not isinstance(node, Mapping):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if len(visiting) >= MAX_IN_PLACE_CHAIN:
            raise SchemaRefused(where, f"chains more than {MAX_IN_PLACE_CHAIN} references "
                                       "at one place of the instance")  # fmt: skip
        if key in visiting:
            raise SchemaRefused(where, "refers back to itself at the same place of the "
                                       "instance (a loop that never descends)")  # fmt: skip
        visiting.add(key)
        total = 1
        for child_where, child in _in_place(schema, anchors, node, where):
            total += size(child, child_where)
            if total > max_nodes:
                raise _TooBig
        visiting.discard(key)
        sizes[key] = total
        return total

    for where, _, sub in subschemas(schema):
        try:
            size(sub, where)
        except _TooBig:
            raise SchemaRefused(where, f"expands to more than {max_nodes} schemas at one place "
                                       "of the instance", "max_nodes") from None  # fmt: skip


class _TooBig(Exception):
    """A place expands past the bound (reported at the subschema where it starts)."""


def _in_place(
    root: Mapping[str, Any], anchors: dict[str, Any], node: Mapping[str, Any], where: str
) -> Iterator[tuple[str, Any]]:
    """The schemas `node` applies at its own place: its reference, and its in-place keywords."""
    ref = node.get("$ref")
    if isinstance(ref, str):
        yield f"{where}.$ref", _resolve(root, anchors, ref, f"{where}.$ref")
    for keyword in IN_PLACE_LISTS:
        for i, sub in enumerate(node.get(keyword) or []):
            yield f"{where}.{keyword}.{i}", sub
    for keyword in IN_PLACE_ONE:
        if keyword in node:
            yield f"{where}.{keyword}", node[keyword]
    dependent = node.get("dependentSchemas")
    if isinstance(dependent, Mapping):
        for name, sub in dependent.items():
            yield f"{where}.dependentSchemas.{name}", sub


def _resolve(root: Mapping[str, Any], anchors: dict[str, Any], ref: str, where: str) -> Any:
    """The value a local reference (``#``, ``#/a/b``, ``#name``) points at."""
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        if fragment not in anchors:
            raise SchemaRefused(where, f"{ref!r} names no $anchor of the schema")
        return anchors[fragment]
    node: Any = root
    for token in fragment.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise SchemaRefused(where, f"{ref!r} points at nothing in the schema")
    return node


def _anchors(schema: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            for key in ("$anchor", "$dynamicAnchor", "$id"):
                name = value.get(key)
                if isinstance(name, str):
                    found[name.removeprefix("#")] = value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def _compile_checked(where: str, pattern: object) -> None:
    if not isinstance(pattern, str):
        raise SchemaRefused(where, "must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaRefused(where, f"has {len(pattern)} characters, over {MAX_PATTERN_CHARS}")
    try:
        _compiled(pattern)
    except re2.error as exc:
        raise SchemaRefused(
            where,
            f"{pattern!r} is not a regular expression RE2 runs ({exc}): no lookaround "
            "or backreferences",
        ) from None


class _Clock(threading.local):
    deadline: float | None = None
    ticks: int = 0


_clock = _Clock()


def _tick() -> None:
    """Stop a validation whose thread has used its CPU deadline (checked every 64 keywords)."""
    if _clock.deadline is None:
        return
    _clock.ticks += 1
    if _clock.ticks % 64 == 0 and time.thread_time() > _clock.deadline:
        raise SchemaTooCostly("validating the answer against its schema took too long")


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _timed(check: Any) -> Any:
    def timed(validator: Validator, value: Any, instance: Any, schema: Any) -> Any:
        _tick()
        return check(validator, value, instance, schema)

    return timed


_Validator: Any = validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    {
        keyword: _timed(_pattern if keyword == "pattern" else check)
        for keyword, check in jsonschema.Draft202012Validator.VALIDATORS.items()
    },
)
