"""The builtin backend: every skill but `translate`, offline, with no model.

Each skill rests on a well-kept library rather than home-made heuristics:

- `sentiment`: support-ticket cues in eight languages (`data/sentiment.toml`,
  see `lexicons`), with VADER (vaderSentiment) for English, whose
  general-purpose lexicon is English only.
- `detect_language`: py3langid's naive Bayes model, with a prior for the
  languages the backend reads, so that a short text is not taken for a rare
  language and its doubt shows in the confidence.
- `summarize`: TextRank (sumy), with pysbd splitting sentences: sumy's own
  tokenizer needs NLTK data downloads, and the builtin backend never touches
  the network.
- `extract_entities`: phonenumbers (E.164), dateparser (ISO dates),
  price-parser (amounts); emails and order ids by regular expression;
  products from a catalogue (`data/products.txt` by default); see
  `builtin_entities`.
- `classify`: there is no offline library for support-ticket intents, so a
  keyword lexicon (`data/intents.toml`, see `lexicons`) in en, de, fr, es,
  pt, it, nl and pl decides intent and urgency.
- `draft_reply`: an English template (`builtin_replies`) filled from the intent, the entities
  and the sentiment.

`translate` is not offered: translation needs a model, and a backend that
returned the text unchanged would be lying. The models and analysers are
built once per backend (so once per worker process); calls run in threads
and may overlap. `builtin_limits` keeps their cost linear in the input and
makes them stop when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pysbd
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from pysbd.languages import LANGUAGE_CODES as PYSBD_LANGUAGES
from sumy.nlp.stemmers import Stemmer, null_stemmer
from sumy.parsers.plaintext import PlaintextParser
from sumy.utils import get_stop_words, normalize_language

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.builtin_entities import (
    DEFAULT_ORDER_ID_PATTERN,
    DEFAULT_PHONE_REGIONS,
    EntityFinder,
)
from agentmesh.agents.builtin_limits import (
    BoundedTextRank,
    LinearVader,
    best_sentences,
    checkpoint,
    run_stoppable,
)
from agentmesh.agents.builtin_replies import given, reply
from agentmesh.agents.lexicons import Lexicon, SentimentCues
from agentmesh.errors import Unimplemented
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage

LANGUAGES = ("en", "de", "fr", "es", "pt", "it")
"""The example tickets' languages: TextRank has stemmers and stop words for them (other
languages get neither), and dateparser loads them when the backend is built."""

#: The languages the lexicons (`lexicons.py`) read, favoured when a text's language is unclear.
LANGUAGES_READ = frozenset((*LANGUAGES, "nl", "pl"))
#: The prior weight of any other language against one of LANGUAGES_READ.
OTHER_LANGUAGE_PRIOR = 0.1

DEFAULT_MAX_SENTENCES = 3

STOP_WAIT = 5.0
"""Seconds a cancelled run waits for its thread to reach a checkpoint and stop."""

_WORD = re.compile(r"\w+")
_ISO_639_1 = re.compile(r"[a-z]{2}")


@dataclass(frozen=True)
class _SentenceTokenizer:
    """The tokenizer interface sumy expects, backed by pysbd."""

    language: str
    """sumy's name for the language, e.g. "german"."""
    segmenter_language: str
    """pysbd's code for it, e.g. "de"."""

    def to_sentences(self, paragraph: str) -> tuple[str, ...]:
        # A Segmenter per call: `segment` stores the text on the instance, so a shared
        # one would race between threads; building one is only a dictionary lookup.
        segmenter = pysbd.Segmenter(language=self.segmenter_language, clean=False)
        return tuple(s.strip() for s in segmenter.segment(paragraph) if s.strip())

    def to_words(self, sentence: str) -> tuple[str, ...]:
        return tuple(_WORD.findall(sentence))


def _summarizer(language: str) -> tuple[_SentenceTokenizer, BoundedTextRank]:
    code = language if language in PYSBD_LANGUAGES else "en"
    if language not in LANGUAGES:
        return _SentenceTokenizer("english", code), BoundedTextRank(null_stemmer)
    name = normalize_language(language)
    summarizer = BoundedTextRank(Stemmer(name))
    summarizer.stop_words = get_stop_words(name)
    return _SentenceTokenizer(name, code), summarizer


class BuiltinBackend:
    """Runs skills with offline libraries; see the module docstring for which."""

    name = "builtin"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def __init__(
        self,
        *,
        products: Iterable[str] | None = None,
        order_id_pattern: str | re.Pattern[str] = DEFAULT_ORDER_ID_PATTERN,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        lexicon: Lexicon | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        """Build every model once.

        `now` anchors dates written without a year ("March 3rd" is the most
        recent March 3rd). Takes about a second, mostly loading dateparser's
        language data, so that no call pays for it.
        """
        self._lexicon = lexicon or Lexicon.load()
        self._vader = LinearVader()
        self._cues = SentimentCues.load()
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._summarizers = {lang: _summarizer(lang) for lang in (*LANGUAGES, "")}
        self._entities = EntityFinder(
            self._identifier,
            products=products,
            order_id_pattern=order_id_pattern,
            phone_regions=phone_regions,
            now=now,
            languages=LANGUAGES,
        )
        self._skills: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "extract_entities": lambda data: self._entities.extract(data["text"]),
            "detect_language": self._detect_language,
            "sentiment": lambda data: self._sentiment(data["text"]),
            "summarize": self._summarize,
            "classify": self._classify,
            "draft_reply": self._draft_reply,
        }

    def capabilities(self) -> frozenset[str]:
        """Every skill but `translate` and `plan`, which need a model."""
        return frozenset(self._skills)

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        """Run one skill in a thread; the builtin backend costs no tokens and no money.

        The work is CPU-bound, so it runs off the event loop, which goes on
        serving heartbeats, health checks and other calls. Cancelling the
        call stops the thread at its next checkpoint (between stages,
        sentence blocks, sentiment words) and returns once it has stopped,
        so a cancelled subtask frees its slot and its CPU together.
        """
        handler = self._skills.get(skill.name)
        if handler is None:
            raise Unimplemented(
                f"the builtin backend cannot run {skill.name!r}", reason="SKILL_NOT_SUPPORTED"
            )
        stop = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(run_stoppable, handler, data, stop))
        try:
            output = await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):  # Stopped, or slower than STOP_WAIT
                await asyncio.wait_for(asyncio.shield(work), STOP_WAIT)
            raise
        return BackendResult(output=output, usage=Usage(), model=self.model)

    # -- language and sentiment ---------------------------------------------------------

    def _identify(self, text: str) -> tuple[str, float]:
        """The most probable language and its probability, under a prior for customers' languages.

        py3langid knows about a hundred languages and, on a short text, often
        prefers a rare one ("hello there" reads as Sesotho). Its probabilities
        are weighed by a prior that favours the languages this backend reads
        (`LANGUAGES_READ`) over other ISO 639-1 languages, and renormalised:
        a long text's evidence still wins, a short text's doubt shows in the
        confidence.
        """
        weighed = {
            language: p * (1.0 if language in LANGUAGES_READ else OTHER_LANGUAGE_PRIOR)
            for language, p in self._identifier.rank(text)
            if _ISO_639_1.fullmatch(language)  # the model also knows ISO 639-3-only languages
        }
        total = sum(weighed.values())
        language = max(weighed, key=weighed.__getitem__)
        return language, min(max(weighed[language] / total if total else 0.0, 0.0), 1.0)

    def _detect_language(self, data: Mapping[str, Any]) -> dict[str, Any]:
        language, confidence = self._identify(data["text"])
        return {"language": language, "confidence": round(confidence, 4)}

    def _sentiment(self, text: str) -> dict[str, Any]:
        """VADER for English, support-ticket cues (`data/sentiment.toml`) for every language.

        VADER's lexicon is English and general-purpose; in another language it
        mostly reads noise. So English text gets the mean of VADER's compound
        score and the cues' score (VADER alone when no cue is found), other
        languages the cues' score alone.
        """
        cues, found = self._cues.score(text)
        if self._identify(text)[0] == "en":
            vader = self._vader.polarity_scores(text)["compound"]
            score = (vader + cues) / 2 if found else vader
        else:
            score = cues
        score = round(score, 4)
        # VADER's own thresholds for its compound score.
        label = "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"
        return {"label": label, "score": score}

    def _summarize(self, data: Mapping[str, Any]) -> dict[str, Any]:
        text = data["text"] if "text" in data else "\n\n".join(data["texts"])
        count = data.get("max_sentences", DEFAULT_MAX_SENTENCES)
        language = self._identify(text)[0]
        tokenizer, summarizer = self._summarizers.get(language, self._summarizers[""])
        document = PlaintextParser.from_string(text, tokenizer).document
        checkpoint()
        summary = " ".join(str(s) for s in best_sentences(summarizer, document, count))
        if not summary:  # e.g. a text of headings only, which TextRank skips
            first = tokenizer.to_sentences(text.strip())
            summary = first[0] if first else text.strip()[:300] or text
        return {"summary": summary}

    # -- triage and replies -------------------------------------------------------------------

    def _classify(self, data: Mapping[str, Any]) -> dict[str, Any]:
        text = data["text"]
        sentiment = given(data, "sentiment", "score", float)
        if sentiment is None:
            sentiment = self._sentiment(text)["score"]
        checkpoint()
        amounts = given(data, "entities", "amounts", list)
        if amounts is None:
            amounts = self._entities.amounts(text)[0]
        checkpoint()
        largest = max(
            (
                a["value"]
                for a in amounts
                if isinstance(a, Mapping) and isinstance(a.get("value"), int | float)
            ),
            default=0.0,
        )
        intent, confidence = self._lexicon.intent(text)
        return {
            "intent": intent,
            "urgency": self._lexicon.urgency(text, sentiment, largest),
            "confidence": round(confidence, 4),
        }

    def _draft_reply(self, data: Mapping[str, Any]) -> dict[str, Any]:
        text = data["text"]
        triage = data["intent"] if isinstance(data.get("intent"), Mapping) else self._classify(data)
        entities = (
            data["entities"]
            if isinstance(data.get("entities"), Mapping)
            else self._entities.extract(text)
        )
        label = given(data, "sentiment", "label", str) or self._sentiment(text)["label"]
        return {"reply": reply(triage, entities, label), "language": "en"}
