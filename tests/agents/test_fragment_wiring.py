"""The wiring of plan fragments' steps (`agents/wiring.py`), its protobuf edge, and the
ABORTED error it answers with: pure logic, no server."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from agentmesh.agents.convert import wiring_from_proto
from agentmesh.agents.wiring import Source, Wire, resolve_wiring, stuck, wiring_violations
from agentmesh.errors import Aborted, InvalidArgument, error_for_code
from agentmesh.server.refs import MISSING
from agentmesh.status import error_from_status, to_status_proto
from agentmesh.v1 import worker_pb2

OUTPUTS = {
    "split": {"words": ["alpha", "beta", "gamma"], "first": {"word": "alpha"}, "count": 3},
    "score": {"value": 0.5, "flags": [], "nothing": None},
}


def ref(path: str) -> Source:
    return Source(ref=path)


def test_the_first_source_that_resolves_gives_the_value() -> None:
    wiring = [
        Wire("word", (ref("steps.split.missing"), ref("steps.split.words.1"), ref("steps.split"))),
        Wire("first", (ref("steps.split.first.word"),)),
        Wire("whole", (ref("steps.score"),)),
        Wire("null", (ref("steps.score.nothing"), Source(value="unused"))),
    ]
    assert resolve_wiring(wiring, OUTPUTS) == {
        "word": "beta",
        "first": "alpha",
        "whole": OUTPUTS["score"],
        "null": None,  # a null that is there resolves: it is not "nothing"
    }


@pytest.mark.parametrize(
    "path",
    [
        "steps.split.words.3",  # past the list's end
        "steps.split.words.-1",  # an index is digits
        "steps.split.words.x",
        "steps.split.count.0",  # into a number
        "steps.split.first.word.0",  # a string is no list
        "steps.other.words",  # no output under that id
    ],
)
def test_a_path_that_does_not_exist_resolves_to_nothing(path: str) -> None:
    assert resolve_wiring([Wire("f", (ref(path),))], OUTPUTS) == {}
    assert resolve_wiring([Wire("f", (ref(path),), default=7)], OUTPUTS) == {"f": 7}


def test_collect_lists_every_source_that_resolves_in_order() -> None:
    wiring = [
        Wire(
            "all",
            (
                ref("steps.split.words.2"),
                ref("steps.split.nope"),
                Source(value={"k": [1, 2]}),
                ref("steps.score.flags"),
                ref("steps.split.words.0"),
            ),
            collect=True,
        ),
        Wire("none", (ref("steps.split.nope"),), collect=True, default="not with collect"),
    ]
    assert resolve_wiring(wiring, OUTPUTS) == {
        "all": ["gamma", {"k": [1, 2]}, [], "alpha"],
        "none": [],  # a collected field is always a list
    }


def test_a_field_no_source_resolves_takes_its_default_or_is_left_out() -> None:
    wiring = [
        Wire("mode", (ref("steps.split.mode"),), default="loud"),
        Wire("falsy", (ref("steps.split.mode"),), default=0),
        Wire("nulled", (ref("steps.split.mode"),), default=None),
        Wire("absent", (ref("steps.split.mode"),)),
        Wire("empty", ()),
    ]
    assert resolve_wiring(wiring, OUTPUTS) == {"mode": "loud", "falsy": 0, "nulled": None}


def test_a_literal_source_is_its_value() -> None:
    wiring = [Wire("lit", (Source(value=[1, "two"]), ref("steps.split.count")))]
    assert resolve_wiring(wiring, OUTPUTS) == {"lit": [1, "two"]}


def test_good_wiring_has_no_violations() -> None:
    wiring = [
        Wire("a", (ref("steps.split"), ref("steps.score.value.x"), Source(value=1))),
        Wire("b", (ref("steps.split.words.0"),), collect=True),
    ]
    assert wiring_violations(["split", "score"], wiring) == []


def test_bad_wiring_is_named_field_by_field() -> None:
    wiring = [
        Wire("", (ref("steps.split"),)),
        Wire("a", (ref("request.text"), ref("steps"), ref("split.words"), ref("steps.other.x"))),
        Wire("a", ()),
        Wire("c", (ref("steps.split"),), collect=True, default=1),  # the default does not apply
    ]
    violations = wiring_violations(["split"], wiring)
    assert [v.field for v in violations] == [
        "wiring[0].field",
        "wiring[1].sources[0].ref",
        "wiring[1].sources[1].ref",
        "wiring[1].sources[2].ref",
        "wiring[1].sources[3].ref",
        "wiring[2].field",
    ]
    assert "in `after` (split)" in violations[1].description
    assert "wired twice" in violations[5].description


def test_steps_on_a_cycle_and_after_one_are_stuck() -> None:
    assert stuck({"b": ["a"], "c": ["b", "a"]}) == set()  # a chain: "a" runs at once
    assert stuck({"b": ["nowhere"]}) == set()  # missing: answered on its own
    assert stuck({"a": ["a"]}) == {"a"}
    assert stuck({"a": ["b"], "b": ["a"], "c": ["b"], "d": ["x"], "e": ["d"]}) == {"a", "b", "c"}


def test_wiring_from_proto_reads_refs_literals_and_defaults() -> None:
    fields = [
        worker_pb2.WiredField(
            field="f",
            sources=[
                worker_pb2.WireSource(ref="steps.a.x.0"),
                worker_pb2.WireSource(value=struct_pb2.Value(number_value=3)),
                worker_pb2.WireSource(value=struct_pb2.Value(null_value=0)),
                worker_pb2.WireSource(),  # nothing set: a null literal
            ],
            default_value=struct_pb2.Value(string_value="d"),
        ),
        worker_pb2.WiredField(field="g", collect=True),
    ]
    fields[1].sources.add().value.list_value.values.add().number_value = 1.5
    assert wiring_from_proto(fields) == (
        Wire(
            "f",
            (
                Source(ref="steps.a.x.0"),
                Source(value=3),  # a whole number is an int, as in every input
                Source(value=None),
                Source(value=None),
            ),
            default="d",
        ),
        Wire("g", (Source(value=[1.5]),), collect=True, default=MISSING),
    )


def test_a_literal_json_cannot_hold_is_refused() -> None:
    field = worker_pb2.WiredField(field="f")
    field.sources.add().value.number_value = float("nan")
    with pytest.raises(InvalidArgument) as raised:
        wiring_from_proto([field])
    assert raised.value.violations[0].field == "wiring[0].sources[0].value"


def test_aborted_is_its_own_error_and_crosses_the_wire() -> None:
    error = Aborted("not run", reason="FRAGMENT_BROKEN", metadata={"after": "a"})
    back = error_from_status(to_status_proto(error))
    assert type(back) is Aborted
    assert (back.code_name, back.reason, back.metadata) == (
        "ABORTED",
        "FRAGMENT_BROKEN",
        {"after": "a"},
    )
    assert type(error_for_code("ABORTED", "m")) is Aborted
