"""SchedulerLink tells a live scheduler's cancellation from a gone scheduler's."""

from __future__ import annotations

import asyncio

from agentmesh.agents.link import SchedulerLink


def link() -> tuple[SchedulerLink, list[int]]:
    woken: list[int] = []
    return SchedulerLink(lambda: woken.append(1)), woken


async def test_before_any_answer_the_scheduler_counts_as_gone() -> None:
    scheduler, woken = link()
    assert not scheduler.up
    assert await scheduler.alive(timeout=5) is False
    assert woken == []


async def test_an_answer_to_a_beat_sent_after_the_question_means_alive() -> None:
    scheduler, woken = link()
    scheduler.answered(scheduler.sent())  # registered
    question = asyncio.ensure_future(scheduler.alive(timeout=5))
    await asyncio.sleep(0)
    assert woken == [1]  # a beat was asked for now
    scheduler.answered(scheduler.sent())  # the beat that was woken
    assert await question is True


async def test_an_answer_to_an_older_beat_does_not_count() -> None:
    scheduler, _ = link()
    scheduler.answered(scheduler.sent())
    old = scheduler.sent()
    question = asyncio.ensure_future(scheduler.alive(timeout=0.2))
    await asyncio.sleep(0)
    scheduler.answered(old)  # written before the question was asked
    assert await question is False  # and nothing since, in time


async def test_a_failure_after_the_question_means_gone() -> None:
    scheduler, _ = link()
    scheduler.answered(scheduler.sent())
    scheduler.sent()
    question = asyncio.ensure_future(scheduler.alive(timeout=5))
    await asyncio.sleep(0)
    scheduler.lost()
    assert await question is False
    assert not scheduler.up
    assert await scheduler.alive(timeout=5) is False  # still down: no need to ask


async def test_a_register_answered_after_a_directive_means_alive() -> None:
    scheduler, _ = link()
    scheduler.answered(scheduler.sent())
    question = asyncio.ensure_future(scheduler.alive(timeout=5))
    await asyncio.sleep(0)
    register = scheduler.sent()  # a REGISTER directive: the worker registers again
    scheduler.answered(register)
    assert await question is True
