"""JSON Schemas as data: what is refused before use, and validation that fetches nothing."""

import json
import time

import pytest
from pydantic import BaseModel

from moa_graph.json_schema import (
    SchemaRefused,
    SchemaTooCostly,
    check_document,
    first_error,
    subschemas,
)
from moa_graph.structured import AnswerSchema
from moa_graph.trust import RequestPolicy, RequestRefused
from tests.serve_process import Listener

SUM = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["a"],
}


def chain(levels: int) -> dict:
    """Each definition an ``allOf`` of two references to the next: 2^levels checks per place."""
    defs = {f"d{k}": {"allOf": [{"$ref": f"#/$defs/d{k + 1}"}] * 2} for k in range(levels)}
    defs[f"d{levels}"] = {"type": "string"}
    return {"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs}


def refused(schema: dict) -> SchemaRefused:
    with pytest.raises(SchemaRefused) as caught:
        check_document(schema, max_depth=16, max_nodes=10_000)
    return caught.value


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


def test_what_would_fetch_is_refused_anywhere_in_the_document(listener) -> None:
    remote = f"{listener.url}/schema.json"
    cases = {
        ".$dynamicRef": {"$dynamicRef": remote},
        ".properties.a.$recursiveRef": {"properties": {"a": {"$recursiveRef": "#"}}},
        ".$ref": {"$ref": remote},
        ".x-data.$ref": {"$ref": "#/x-data", "x-data": {"$ref": remote}},
        ".properties.a.enum.0.$ref": {"properties": {"a": {"enum": [{"$ref": remote}]}}},
        ".default.$ref": {"default": {"$ref": "file:///etc/passwd"}},
        ".$id": {"$id": "http://elsewhere/root.json", "properties": {}},
        ".$schema": {"$schema": "http://listener/dialect"},
    }
    for where, schema in cases.items():
        assert refused(schema).where == where, schema
    assert listener.received == []
    check_document({"$schema": "https://json-schema.org/draft/2020-12/schema", **SUM},
                   max_depth=16, max_nodes=10_000)  # fmt: skip


def test_in_place_loops_and_expansion_are_refused_recursion_through_children_is_not() -> None:
    assert "refers back to itself" in str(refused({"if": {"$ref": "#"}}))
    assert "refers back to itself" in str(refused({"$defs": {"a": {"$ref": "#/$defs/a"}}}))
    error = refused(chain(18))
    assert "expands to more than 10000" in str(error)
    check_document(chain(11), max_depth=16, max_nodes=10_000)  # 8,189 schemas at one place

    class Node(BaseModel):
        name: str
        children: list["Node"] = []

    tree = Node.model_json_schema()
    check_document(tree, max_depth=16, max_nodes=10_000)
    value = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert first_error(value, tree) is None
    assert first_error({"name": "a", "children": [{"name": 1}]}, tree) is not None


def test_deep_data_is_refused_not_a_crash() -> None:
    deep: object = "x"
    for _ in range(900):
        deep = [deep]
    error = refused({"enum": [deep]})
    assert "nests" in str(error)
    with pytest.raises(RequestRefused) as caught:
        RequestPolicy().check_schema("s", {"type": "object", "enum": [deep]})
    assert caught.value.param.startswith("s.enum.0")


def test_pattern_is_matched_in_linear_time_and_refused_only_where_re2_cannot() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    check_document(schema, max_depth=16, max_nodes=10_000)
    start = time.perf_counter()
    assert first_error({"s": "a" * 40 + "b"}, schema) is not None  # Python's re: hours
    assert first_error({"s": "aaa"}, schema) is None
    assert time.perf_counter() - start < 1.0
    assert "RE2" in str(refused({"properties": {"s": {"pattern": r"(a)\1"}}}))
    assert "over 1000" in str(refused({"pattern": "a" * 1001}))
    assert "patternProperties" in str(refused({"patternProperties": {"^a": {}}}))
    named = {"type": "object", "properties": {"pattern": {"type": "string"}}}
    RequestPolicy().check_schema("s", named)  # a property named pattern is not a regex


def test_validation_stops_at_its_cpu_deadline() -> None:
    schema = {"type": "object", "additionalProperties": chain(11)["$defs"]["d0"],
              "$defs": chain(11)["$defs"]}  # fmt: skip
    check_document(schema, max_depth=16, max_nodes=10_000)
    big = {f"k{i}": "v" for i in range(5000)}
    with pytest.raises(SchemaTooCostly):
        first_error(big, schema, cpu_s=0.05)


def test_nothing_is_retrieved_even_for_a_schema_written_by_the_caller(listener) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": f"{listener.url}/a.json"}}}
    with pytest.raises(Exception, match="Unresolvable"):
        first_error({"a": 1}, schema)
    assert listener.received == []
    assert AnswerSchema.of(SUM).parse({"a": 1}) == {"a": 1}


def test_subschemas_walk_schemas_not_data() -> None:
    schema = {**SUM, "enum": [{"type": "object"}], "$defs": {"D": {"anyOf": [{"type": "null"}]}}}
    found = {where: depth for where, depth, _ in subschemas(schema)}
    assert found == {
        "": 1, ".properties.a": 2, ".properties.items": 2, ".properties.items.items": 3,
        ".$defs.D": 2, ".$defs.D.anyOf.0": 3,
    }  # fmt: skip


def test_a_request_bounds_the_bytes_of_all_its_schemas() -> None:
    policy = RequestPolicy(max_request_schema_bytes=1000)
    size = policy.check_schema("tools[0].function.parameters", SUM)
    assert size == len(json.dumps(SUM))
    with pytest.raises(RequestRefused, match="MOA_SERVE_MAX_REQUEST_SCHEMA_BYTES"):
        policy.check_schema_total(size * 10)
