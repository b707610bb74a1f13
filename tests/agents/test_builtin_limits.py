"""The builtin backend's bounds: the same results on ordinary texts, linear work on long
ones, and runs that stop when cancelled."""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
import time
from pathlib import Path

import pytest
from sumy.parsers.plaintext import PlaintextParser
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from agentmesh.agents import builtin_limits
from agentmesh.agents.builtin import BuiltinBackend, _summarizer
from agentmesh.agents.builtin_limits import (
    TEXTRANK_BLOCK,
    LinearVader,
    Stopped,
    best_sentences,
    checkpoint,
    near_digits,
    run_stoppable,
)
from agentmesh.server.skills import SKILLS

EXAMPLES = Path(__file__).parents[2] / "examples"
DOCUMENT = (EXAMPLES / "long_document.txt").read_text(encoding="utf-8")
WORDS = (
    "no not never but very good bad kind of sort the refund was late I am happy sad "
    "without doubt least at so this GREAT awful :) ! ? nor or"
).split()


def test_linear_vader_scores_exactly_as_vader() -> None:
    rng = random.Random(7)
    upstream, linear = SentimentIntensityAnalyzer(), LinearVader()
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    texts += [DOCUMENT[:5000], "No, it is not good at all, but the support was kind of great!"]
    for text in texts:
        assert linear.polarity_scores(text) == upstream.polarity_scores(text), text


def test_linear_vader_checks_a_window_not_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    check = SentimentIntensityAnalyzer._negation_check

    def recording(valence: float, words: list[str], start_i: int, i: int) -> float:
        seen.append(len(words))
        return check(valence, words, start_i, i)  # type: ignore[no-any-return]

    monkeypatch.setattr(SentimentIntensityAnalyzer, "_negation_check", staticmethod(recording))
    LinearVader().polarity_scores(DOCUMENT)
    # Upstream each check lower-cases all ~3,000 words of the text: quadratic in its length.
    assert seen and max(seen) <= 6


def test_textrank_is_unchanged_up_to_a_block_and_bounded_beyond() -> None:
    tokenizer, summarizer = _summarizer("en")
    document = PlaintextParser.from_string(DOCUMENT, tokenizer).document
    assert len(document.sentences) <= TEXTRANK_BLOCK
    assert best_sentences(summarizer, document, 3) == tuple(summarizer(document, 3))

    long = PlaintextParser.from_string("\n\n".join([DOCUMENT] * 5), tokenizer).document
    count = len(long.sentences)
    assert count > 3 * TEXTRANK_BLOCK
    rated = 0
    rate = summarizer._rate_sentences_edge

    def counting(words1: list[str], words2: list[str]) -> float:
        nonlocal rated
        rated += 1
        return rate(words1, words2)  # type: ignore[no-any-return]

    summarizer._rate_sentences_edge = counting
    try:
        best = best_sentences(summarizer, long, 3)
    finally:
        del summarizer._rate_sentences_edge
    assert len(best) == 3 and all(s in long.sentences for s in best)
    # TextRank alone rates every pair: count² / 2; in blocks, about count × block / 2.
    assert rated < count * TEXTRANK_BLOCK


def test_near_digits_keeps_every_digit_with_its_words() -> None:
    text = "Hello there. " * 50 + "It arrived on March 3, 2025 and " + "more words " * 50 + "ORD-12"
    pieces = near_digits(text)
    joined = " | ".join(pieces)
    assert "arrived on March 3, 2025 and" in joined and "ORD-12" in joined
    assert len(joined) < len(text) / 2
    assert near_digits("no digits here") == []
    assert near_digits("x1" * 50_000)  # no spaces at all: still bounded, still whole


def test_a_stopped_run_raises_at_its_next_checkpoint() -> None:
    stop = threading.Event()
    # As asyncio.to_thread runs it: in a copy of the caller's context.
    assert contextvars.copy_context().run(run_stoppable, lambda n: n + 1, 1, stop) == 2
    stop.set()
    with pytest.raises(Stopped):
        contextvars.copy_context().run(run_stoppable, lambda _: checkpoint(), None, stop)
    checkpoint()  # outside that run: nothing to stop


async def test_cancelling_a_builtin_run_stops_its_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = BuiltinBackend()
    checkpoints = 0
    original = builtin_limits.checkpoint

    def counting() -> None:
        nonlocal checkpoints
        checkpoints += 1
        original()

    started = threading.Event()

    def slow(data: object) -> dict[str, object]:
        started.set()
        while True:  # work that only ends when it is stopped
            counting()
            time.sleep(0.001)

    monkeypatch.setitem(backend._skills, "sentiment", slow)
    run = asyncio.ensure_future(backend.run(SKILLS["sentiment"], {"text": "x"}))
    await asyncio.to_thread(started.wait, 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    seen = checkpoints
    await asyncio.sleep(0.05)
    assert checkpoints == seen  # the thread has stopped, not just been abandoned
