"""The builtin backend's keyword lexicons: intents, urgency and sentiment cues.

There is no offline library for support-ticket intents, nor a sentiment
lexicon for most of the languages customers write in (VADER's is English),
so `classify` and `sentiment` rest on keyword lists kept as data
(`data/intents.toml`, `data/sentiment.toml`), in the languages of the
example tickets and a few more: en, de, fr, es, pt, it, nl, pl.

Matching is case-insensitive and ignores accents; a keyword matches a whole
word or phrase, and a trailing "*" makes it a prefix.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentmesh.agents.builtin_limits import checkpoint
from agentmesh.server.skills import URGENCIES

DATA = Path(__file__).parent / "data"


def fold(text: str) -> str:
    """Lower case without accents, so keywords match however customers type them."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def keyword(keyword: str) -> re.Pattern[str]:
    """A whole word or phrase; a trailing "*" makes it a prefix."""
    prefix = keyword.endswith("*")
    words = fold(keyword.rstrip("*")).split()
    end = "" if prefix else r"(?!\w)"
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + end)


def keywords(by_language: Mapping[str, Sequence[str]]) -> tuple[re.Pattern[str], ...]:
    return tuple(keyword(k) for words in by_language.values() for k in words)


@dataclass(frozen=True)
class Lexicon:
    """The keyword evidence `classify` decides from (see `data/intents.toml`)."""

    intents: Mapping[str, tuple[re.Pattern[str], ...]]
    """Keywords per intent, in priority order: ties go to the earlier intent."""
    fallback: frozenset[str]
    """Intents that win only when no other intent has a hit (a complaint)."""
    critical: tuple[re.Pattern[str], ...]
    high: tuple[re.Pattern[str], ...]
    low: tuple[re.Pattern[str], ...]
    negative_sentiment: float
    """Sentiment at or below this raises urgency one level."""
    large_amount: float
    """An amount at or above this raises urgency one level."""

    @classmethod
    def load(cls, path: Path = DATA / "intents.toml") -> Lexicon:
        with path.open("rb") as file:
            data = tomllib.load(file)
        urgency = data["urgency"]
        return cls(
            intents={name: keywords(words) for name, words in data["intents"].items()},
            fallback=frozenset(data.get("fallback", ())),
            critical=keywords(urgency["critical"]),
            high=keywords(urgency["high"]),
            low=keywords(urgency["low"]),
            negative_sentiment=float(urgency["negative_sentiment"]),
            large_amount=float(urgency["large_amount"]),
        )

    def intent(self, text: str) -> tuple[str, float]:
        """The intent with the most keyword hits, and a confidence.

        Every occurrence counts: a customer who writes "cancel" twice is
        asking to cancel. Confidence is the smoothed share of the winner's
        hits among the top two, (top + 1) / (top + runner_up + 2): 0.5 with
        no evidence either way, rising towards 1 as the winner's lead grows.
        A fallback intent (a complaint) counts only when no other has a hit.
        """
        folded = fold(text)
        hits = {}
        for name, keywords in self.intents.items():
            checkpoint()  # a long text takes a while per intent
            hits[name] = sum(len(k.findall(folded)) for k in keywords)
        if any(n for name, n in hits.items() if name not in self.fallback):
            hits = {name: n for name, n in hits.items() if name not in self.fallback}
        ranked = sorted(hits.items(), key=lambda item: -item[1])  # stable: file order on ties
        (best, top), runner_up = ranked[0], ranked[1][1] if len(ranked) > 1 else 0
        return (best if top else "general"), (top + 1) / (top + runner_up + 2)

    def urgency(self, text: str, sentiment: float, largest_amount: float) -> str:
        """Cues set the level; strong negativity and a large amount each raise it one."""
        folded = fold(text)
        calm = any(k.search(folded) for k in self.low)
        for k in self.low:  # so that "not urgent" does not count as "urgent"
            folded = k.sub(" ", folded)
        if any(k.search(folded) for k in self.critical):
            level = URGENCIES.index("critical")
        elif any(k.search(folded) for k in self.high):
            level = URGENCIES.index("high")
        else:
            level = URGENCIES.index("low" if calm else "normal")
        level += (sentiment <= self.negative_sentiment) + (largest_amount >= self.large_amount)
        return URGENCIES[min(level, len(URGENCIES) - 1)]


@dataclass(frozen=True)
class SentimentCues:
    """What customers write when they are upset or pleased (see `data/sentiment.toml`).

    Negative phrases are matched first and removed, so that "nicht zufrieden"
    does not also count as "zufrieden".
    """

    negative: tuple[re.Pattern[str], ...]
    positive: tuple[re.Pattern[str], ...]

    @classmethod
    def load(cls, path: Path = DATA / "sentiment.toml") -> SentimentCues:
        with path.open("rb") as file:
            data = tomllib.load(file)
        return cls(negative=keywords(data["negative"]), positive=keywords(data["positive"]))

    def score(self, text: str) -> tuple[float, int]:
        """A score from -1 to 1, and how many cues it rests on (0: no evidence).

        (positive - negative) / (positive + negative + 1): one cue gives
        ±0.5, three ±0.75; mixed cues pull towards neutral.
        """
        folded = fold(text)
        negative = 0
        for k in self.negative:
            checkpoint()  # hundreds of cues, each a pass over the text
            folded, hits = k.subn(" ", folded)
            negative += hits
        checkpoint()
        positive = sum(len(k.findall(folded)) for k in self.positive)
        cues = negative + positive
        return (positive - negative) / (cues + 1), cues
