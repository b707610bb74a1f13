"""What keeps the builtin backend's work linear in its input, and stoppable.

The libraries behind the builtin skills are written for a sentence or a
ticket. On a long text some cost grows with its square: VADER lower-cases
every word of the text for each sentiment word it checks, and TextRank
rates every pair of sentences. Here are drop-in pieces that bound that
work without changing results on texts of ordinary size, and the
checkpoints where a cancelled run stops (see `checkpoint`).
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
from sumy.summarizers.text_rank import TextRankSummarizer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

TEXTRANK_BLOCK = 200
"""Most sentences TextRank compares pairwise at once. A longer text is ranked in blocks
of this many sentences, then the blocks' best sentences are ranked together."""

TEXTRANK_SENTENCE_WORDS = 200
"""Words of a sentence TextRank compares with others (a "sentence" without punctuation can
be a whole text, and comparing two costs the product of their lengths)."""

DATE_REACH = 60
"""Characters either side of a digit that dateparser scans: every date the backend keeps
has its day written as a number."""

_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "builtin_stop", default=None
)

T = TypeVar("T")


class Stopped(Exception):
    """The run was cancelled; raised at the next checkpoint."""


def checkpoint() -> None:
    """Raise Stopped if the current run has been cancelled; cheap enough to call often."""
    stop = _STOP.get()
    if stop is not None and stop.is_set():
        raise Stopped


def run_stoppable(function: Callable[[Any], T], argument: Any, stop: threading.Event) -> T:
    """Call `function(argument)` with `stop` as the event its checkpoints look at.

    Meant for a worker thread: `asyncio.to_thread` runs it in a copy of the
    caller's context, so the event is seen by this run alone.
    """
    _STOP.set(stop)
    return function(argument)


# vaderSentiment ships no types: its classes and results are Any to mypy.
class LinearVader(SentimentIntensityAnalyzer):  # type: ignore[misc]
    """VADER, giving the same scores in time linear in the text.

    Upstream, the negation and idiom checks lower-case the whole text's
    words each time they look at one sentiment word, so a text of n words
    costs n². They read at most three words before that word and two after
    it, so they get exactly that window here. Each check is also a
    cancellation point.
    """

    @staticmethod
    def _negation_check(valence: float, words: list[str], start_i: int, i: int) -> float:
        checkpoint()
        low = max(i - 3, 0)
        checked: float = SentimentIntensityAnalyzer._negation_check(
            valence, words[low : i + 3], start_i, i - low
        )
        return checked

    @staticmethod
    def _special_idioms_check(valence: float, words: list[str], i: int) -> float:
        low = max(i - 3, 0)
        checked: float = SentimentIntensityAnalyzer._special_idioms_check(
            valence, words[low : i + 3], i - low
        )
        return checked


# sumy ships no types: its classes and results are Any to mypy.
class BoundedTextRank(TextRankSummarizer):  # type: ignore[misc]
    """TextRank that compares at most TEXTRANK_SENTENCE_WORDS words of a sentence."""

    def _to_words_set(self, sentence: Sentence) -> list[str]:
        words: list[str] = super()._to_words_set(sentence)
        return words[:TEXTRANK_SENTENCE_WORDS]


def best_sentences(
    summarizer: TextRankSummarizer, document: ObjectDocumentModel, count: int
) -> tuple[Sentence, ...]:
    """The `count` best sentences of the document, in document order.

    Up to TEXTRANK_BLOCK sentences this is TextRank itself. Beyond, each
    block of TEXTRANK_BLOCK consecutive sentences keeps its `count` best and
    the survivors are ranked again, until one block is left: linear in the
    number of sentences instead of quadratic, and a checkpoint per block.
    """
    sentences: Sequence[Sentence] = document.sentences
    if len(sentences) <= TEXTRANK_BLOCK:
        return tuple(summarizer(document, count))
    keep = min(count, TEXTRANK_BLOCK // 2)  # each round shrinks the text at least twofold
    while len(sentences) > TEXTRANK_BLOCK:
        survivors: list[Sentence] = []
        for start in range(0, len(sentences), TEXTRANK_BLOCK):
            checkpoint()
            block = ObjectDocumentModel([Paragraph(sentences[start : start + TEXTRANK_BLOCK])])
            survivors += summarizer(block, keep)
        sentences = survivors
    checkpoint()
    return tuple(summarizer(ObjectDocumentModel([Paragraph(sentences)]), count))


_DIGIT_RUN = re.compile(r"\d+")


DATE_PIECE = 8_000
"""Characters of text near digits given to dateparser at once, so that a run stops soon."""


def near_digits(text: str, reach: int = DATE_REACH) -> list[str]:
    """The parts of `text` within `reach` characters of a digit, widened to whole words.

    Neighbouring parts are joined by " | ", which dateparser does not read
    across (as with `_blank`'s mask), into pieces of about DATE_PIECE
    characters, to be searched one at a time. A text with few digits is
    mostly skipped; one full of digits is kept whole.
    """
    spans: list[list[int]] = []
    for match in _DIGIT_RUN.finditer(text):
        start, end = max(match.start() - reach, 0), min(match.end() + reach, len(text))
        # Widen to whole words, by at most `reach` more: a text without spaces stays linear.
        floor, ceiling = max(start - reach, 0), min(end + reach, len(text))
        while start > floor and not text[start - 1].isspace():
            start -= 1
        while end < ceiling and not text[end].isspace():
            end += 1
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    pieces: list[str] = []
    for start, end in spans:
        part = text[start:end]
        if pieces and len(pieces[-1]) + len(part) < DATE_PIECE:
            pieces[-1] += " | " + part
        else:
            pieces.append(part)
    return pieces
