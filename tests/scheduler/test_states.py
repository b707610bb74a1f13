"""States, tiers and the hedge setting as typed values: mapped to protobuf in one place each,
stored under the names earlier versions wrote, and parsed once from the environment."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentmesh.scheduler.calls import EventKind
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.convert import EVENT_KINDS, REQUEST_STATES, SUBTASK_STATES
from agentmesh.scheduler.hedging import HedgeAfterDelay, HedgeAtPercentile, HedgeOff
from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.store import SqliteStore
from agentmesh.tiers import Difficulty, Tier
from agentmesh.v1 import plan_pb2, scheduler_pb2, worker_pb2
from agentmesh.wire import difficulty_from_proto, tier_from_proto, tier_to_proto

PLAN = Plan(
    steps=(Step("a", "summarize", {"text": Binding(("request.text",))}, difficulty=2),),
    answer={"summary": Binding(("steps.a.summary",))},
    workflow="demo",
)


def test_every_state_maps_to_the_protobuf_state_of_its_name_and_back() -> None:
    assert {
        scheduler_pb2.SubtaskState.Name(v).removeprefix("SUBTASK_STATE_")
        for v in SUBTASK_STATES.values()
    } == {s.value for s in SubtaskState}
    assert len(SUBTASK_STATES) == len(scheduler_pb2.SubtaskState.values()) - 1  # UNSPECIFIED
    assert REQUEST_STATES[RequestState.CANCELLED] == scheduler_pb2.REQUEST_STATE_CANCELLED
    assert len(REQUEST_STATES) == len(scheduler_pb2.RequestState.values()) - 1


def test_tiers_and_difficulties_keep_the_contract_numbers() -> None:
    for name, tier in [("BUILTIN", Tier.BUILTIN), ("SMALL", Tier.SMALL), ("LARGE", Tier.LARGE)]:
        assert tier_to_proto(tier) == worker_pb2.Tier.Value(f"TIER_{name}")
        assert tier_from_proto(worker_pb2.Tier.Value(f"TIER_{name}")) is tier
    assert tier_from_proto(99) is Tier.UNSPECIFIED
    assert Tier.BUILTIN < Tier.SMALL < Tier.LARGE
    assert [t.label for t in Tier] == ["small", "builtin", "small", "large"]
    assert Tier.parse("large") is Tier.LARGE
    with pytest.raises(ValueError, match="builtin, small, large"):
        Tier.parse("huge")
    assert difficulty_from_proto(plan_pb2.DIFFICULTY_NUANCED) is Difficulty.NUANCED


def test_the_store_writes_state_names_and_reads_them_back_as_states(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    record = new_record("r1", PLAN, {"text": "hi"}, 0, 100.0)
    store.save_request(record, deadline=2e9)
    step = record.subtasks["a"]
    step.state, step.output, step.tier = SubtaskState.SUCCEEDED, {"summary": "s"}, Tier.LARGE
    store.save_subtask("r1", step)
    store.close()

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, typeof(state) FROM requests").fetchone() == (
            "RUNNING",
            "text",
        )
        [(raw,)] = db.execute("SELECT record FROM subtasks").fetchall()
    db.close()
    row = json.loads(raw)
    assert (row["state"], row["tier"]) == ("SUCCEEDED", 3)

    reopened = SqliteStore(path)
    [stored] = list(reopened.unfinished())
    assert stored.record.state is RequestState.RUNNING
    loaded = stored.record.subtasks["a"]
    assert loaded.state is SubtaskState.SUCCEEDED and loaded.tier is Tier.LARGE
    reopened.close()


def test_a_subtask_row_of_an_earlier_version_without_a_tier_reads_as_unspecified(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    record = new_record("r1", PLAN, {"text": "hi"}, 0, 100.0)
    store.save_request(record, deadline=2e9)
    record.subtasks["a"].state = SubtaskState.RUNNING
    store.save_subtask("r1", record.subtasks["a"])
    store.close()
    with sqlite3.connect(path) as db:
        [(raw,)] = db.execute("SELECT record FROM subtasks").fetchall()
        row = json.loads(raw)
        del row["tier"]
        row["state"] = "QUEUED"
        db.execute("UPDATE subtasks SET record = ?", (json.dumps(row),))
    db.close()
    reopened = SqliteStore(path)
    [stored] = list(reopened.unfinished())
    loaded = stored.record.subtasks["a"]
    assert loaded.state is SubtaskState.QUEUED and loaded.tier is Tier.UNSPECIFIED
    reopened.close()


@pytest.mark.parametrize(
    ("raw", "after"),
    [
        ("", HedgeOff()),
        ("p95", HedgeAtPercentile(0.95)),
        ("0.25", HedgeAfterDelay(0.25)),
    ],
)
def test_the_hedge_setting_is_read_once_into_its_kind(raw: str, after: object) -> None:
    assert SchedulerConfig.from_env({"AGENTMESH_HEDGE_AFTER": raw}).hedge.after == after


def test_a_hedge_setting_that_is_neither_is_refused_when_read() -> None:
    with pytest.raises(ValueError, match="use p95 or a number of seconds"):
        SchedulerConfig.from_env({"AGENTMESH_HEDGE_AFTER": "soon"})


def test_every_event_kind_maps_to_the_protobuf_kind_of_its_name() -> None:
    assert {
        scheduler_pb2.SubtaskEventKind.Name(v).removeprefix("SUBTASK_EVENT_KIND_")
        for v in EVENT_KINDS.values()
    } == {k.value for k in EventKind}
    assert len(EVENT_KINDS) == len(scheduler_pb2.SubtaskEventKind.values()) - 1
