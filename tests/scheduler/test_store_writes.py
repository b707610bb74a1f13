"""How the store writes: no rows for steps not started, one hand-over per loop turn."""

import asyncio

from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.states import SubtaskState
from tests.scheduler.test_store import PLAN
from tests.support.stores import Stores


def test_a_new_request_writes_no_row_for_steps_not_started_and_reads_them_as_pending(
    stores: Stores,
) -> None:
    store = stores.open()
    store.save_request(new_record("r1", PLAN, {"text": "hi"}, 0, 100.0), deadline=2e9)
    store.close()
    assert stores.count("subtasks") == 0
    reopened = stores.open()
    [stored] = list(reopened.unfinished())
    assert list(stored.record.subtasks) == ["a", "b"]
    assert all(s.state is SubtaskState.PENDING for s in stored.record.subtasks.values())
    assert stored.record.subtasks["b"].capability == "translate"
    reopened.close()


def test_a_request_run_again_forgets_the_rows_of_the_steps_it_runs_again(
    stores: Stores,
) -> None:
    """A failed step reset to PENDING for a rerun must not read back as FAILED."""
    store = stores.open()
    record = new_record("r1", PLAN, {"text": "hi"}, 0, 100.0)
    store.save_request(record, deadline=2e9)
    a, b = record.subtasks["a"], record.subtasks["b"]
    a.state, a.output = SubtaskState.SUCCEEDED, {"summary": "s"}
    b.state = SubtaskState.FAILED
    store.save_subtask("r1", a)
    store.save_subtask("r1", b)
    b.state = SubtaskState.PENDING  # what a rerun does with what failed
    store.save_request(record, deadline=2e9)
    store.close()
    reopened = stores.open()
    [stored] = list(reopened.unfinished())
    states = {s.id: s.state for s in stored.record.subtasks.values()}
    assert states == {"a": SubtaskState.SUCCEEDED, "b": SubtaskState.PENDING}
    assert stored.record.subtasks["a"].output == {"summary": "s"}
    reopened.close()


def test_writes_of_one_loop_turn_reach_the_writer_together_and_commit(stores: Stores) -> None:
    store = stores.open()
    handed: list[int] = []
    writer = store._writer
    put = writer._queue.put
    writer._queue.put = lambda item, *a, **k: (  # type: ignore[method-assign]
        handed.append(len(item)) if isinstance(item, list) else None,
        put(item, *a, **k),
    )[1]

    async def one_turn() -> bool:
        record = new_record("r1", PLAN, {"text": "hi"}, 0, 100.0)
        store.save_request(record, deadline=2e9)
        for subtask in record.subtasks.values():
            subtask.state = SubtaskState.RUNNING
            store.save_subtask("r1", subtask)
        return await store.committed(10.0)

    assert asyncio.run(one_turn())
    # The request, the clearing of its rows, and two subtask rows: one hand-over.
    assert handed == [4]
    assert stores.count("subtasks") == 2
    store.close()
