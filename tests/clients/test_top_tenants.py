"""`agentmesh top`'s recent requests with tenants: one id listed twice says whose each is."""

from __future__ import annotations

from agentmesh.top import recent_table
from agentmesh.v1 import scheduler_pb2
from tests.clients.test_top_view import NOW, summary, text_of

SUCCEEDED = scheduler_pb2.REQUEST_STATE_SUCCEEDED


def test_two_tenants_requests_of_one_id_show_their_tenants() -> None:
    recent = [summary("ticket-124", SUCCEEDED, 0.5), summary("ticket-124", SUCCEEDED, 0.5)]
    recent[0].tenant, recent[1].tenant = "tenant-b", "tenant-a"
    text = text_of(recent_table(recent, NOW))
    assert "tenant" in text
    rows = [line for line in text.splitlines() if "ticket-124" in line]
    assert len(rows) == 2
    assert "tenant-b" in rows[0] and "tenant-a" in rows[1]


def test_without_tenants_there_is_no_tenant_column() -> None:
    text = text_of(recent_table([summary("req-1", SUCCEEDED, 0.5)], NOW))
    assert "tenant" not in text and "req-1" in text
