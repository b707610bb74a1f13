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
  products from a catalogue (`data/products.txt` by default).
- `classify`: there is no offline library for support-ticket intents, so a
  keyword lexicon (`data/intents.toml`, see `lexicons`) in en, de, fr, es,
  pt, it, nl and pl decides intent and urgency.
- `draft_reply`: an English template filled from the intent, the entities
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
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pysbd
from dateparser.data.languages_info import language_order as DATEPARSER_LANGUAGES
from dateparser.search import search_dates
from price_parser import Price
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from pysbd.languages import LANGUAGE_CODES as PYSBD_LANGUAGES
from sumy.nlp.stemmers import Stemmer, null_stemmer
from sumy.parsers.plaintext import PlaintextParser
from sumy.utils import get_stop_words, normalize_language

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.builtin_limits import (
    BoundedTextRank,
    LinearVader,
    best_sentences,
    checkpoint,
    near_digits,
    run_stoppable,
)
from agentmesh.agents.lexicons import DATA, Lexicon, SentimentCues, fold
from agentmesh.errors import Unimplemented
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage

DEFAULT_ORDER_ID_PATTERN = r"""(?ix)
    (?<![\w-])(?P<prefixed>ORD-?\d{4,12})(?![\w-])          # ORD-123456
  | \b(?:order|bestellung|bestellnummer|auftragsnummer|commande|pedido|encomenda|ordine)
    (?:\s+(?:number|no\.?|nr\.?|n[.ºo°]|num(?:ber|ero|éro)|número))?
    \s*[:#]?\s*\#?(?P<named>[A-Z0-9]*\d[A-Z0-9]{3,})\b     # order #A1B2C3, Bestellnummer 884213
  | (?<![\w&])\#(?P<hashed>\d{5,12})\b                     # #784512
"""
"""Order ids: the first group that matched is the id."""

DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "PT", "BR")
"""Regions tried, in order, for numbers written without a country code."""

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

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
_WORD = re.compile(r"\w+")
_ISO_639_1 = re.compile(r"[a-z]{2}")
# Currency markers, and the ISO 4217 code each stands for. "$" alone is read as USD.
_CURRENCIES = {
    "US$": "USD",
    "R$": "BRL",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "euros": "EUR",
    "euro": "EUR",
    **{
        code: code
        for code in (
            "USD",
            "EUR",
            "GBP",
            "CHF",
            "BRL",
            "CAD",
            "AUD",
            "JPY",
            "MXN",
            "SEK",
            "NOK",
            "DKK",
            "PLN",
            "INR",
            "CNY",
        )
    },
}
_CURRENCY = "|".join(re.escape(c) for c in sorted(_CURRENCIES, key=len, reverse=True))
_NUMBER = r"\d(?:[\d.,]*\d)?"
_AMOUNT = re.compile(
    rf"(?<![\w$])(?P<before>{_CURRENCY})\s?(?P<n1>{_NUMBER})(?![\d])"
    rf"|(?<![\d.,])(?P<n2>{_NUMBER})\s?(?P<after>{_CURRENCY})(?![A-Za-z])"
)
_NUMERIC_DATE = r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"
# A date mention names a month in words or is numeric d/m/y; "3, 5" is neither.
_DATE_SHAPE = re.compile(rf"[^\W\d_]{{3,}}|{_NUMERIC_DATE}")
_ONLY_A_DATE = re.compile(rf"\s*{_NUMERIC_DATE}\s*")


def load_products(path: Path = DATA / "products.txt") -> tuple[str, ...]:
    """Product names from a catalogue file: one a line, "#" starts a comment line."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


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


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """Mask the spans, so later searches skip them, keeping offsets.

    The mask is not spaces: dateparser would join the words either side, and
    "comprei um [product] em 1 de março" would become "um em 1", 1 January.
    """
    chars = list(text)
    for start, end in spans:
        chars[start:end] = "|" * (end - start)
    return "".join(chars)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


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
        names = sorted(load_products() if products is None else products, key=len, reverse=True)
        self._products = re.compile(
            "|".join(r"(?<!\w)" + r"\s+".join(map(re.escape, n.split())) + r"(?!\w)" for n in names)
            or r"(?!)",
            re.IGNORECASE,
        )
        self._canonical = {fold(" ".join(n.split())): n for n in names}
        self._order_ids = re.compile(order_id_pattern)
        self._phone_regions = tuple(phone_regions)
        self._lexicon = lexicon or Lexicon.load()
        self._now = now
        self._vader = LinearVader()
        self._cues = SentimentCues.load()
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._summarizers = {lang: _summarizer(lang) for lang in (*LANGUAGES, "")}
        # dateparser keeps shared caches that it fills lazily; one call at a time.
        self._dates_lock = threading.Lock()
        for language in LANGUAGES:  # dateparser loads a language on its first use
            self._search_dates("3/3/2025", [language], now())
        self._skills: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "extract_entities": lambda data: self._extract_entities(data["text"]),
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

    # -- entities --------------------------------------------------------------------------

    def _extract_entities(self, text: str) -> dict[str, Any]:
        """Each finder searches what earlier ones left: an order id is not also a phone number,
        and "$249.99 on March 3rd" is not read as a date in 1999."""
        emails = [(m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]
        rest = _blank(text, [(s, e) for s, e, _ in emails])
        checkpoint()
        order_ids = [
            (m.start(), m.end(), next((g for g in m.groups() if g), m.group()))
            for m in self._order_ids.finditer(rest)
        ]
        rest = _blank(rest, [(s, e) for s, e, _ in order_ids])
        products = [(m.start(), m.end()) for m in self._products.finditer(rest)]
        product_names = [self._canonical[fold(" ".join(rest[s:e].split()))] for s, e in products]
        rest = _blank(rest, products)
        checkpoint()
        phones, rest = self._phone_numbers(rest)
        checkpoint()
        amounts, rest = self._amounts(rest)
        checkpoint()
        return {
            "order_ids": _unique(i for _, _, i in order_ids),
            "emails": _unique(e for _, _, e in emails),
            "phone_numbers": phones,
            "products": _unique(product_names),
            "dates": self._dates(rest, self._date_languages(text)),
            "amounts": amounts,
        }

    def _phone_numbers(self, text: str) -> tuple[list[str], str]:
        """E.164 numbers: international ones first, then each region's national format."""
        found: list[tuple[int, str]] = []
        for region in (None, *self._phone_regions):
            checkpoint()
            # phonenumbers takes "04.03.2025" for a number in Hamburg.
            matches = [
                m
                for m in phonenumbers.PhoneNumberMatcher(text, region)
                if not _ONLY_A_DATE.fullmatch(m.raw_string)
            ]
            found += [
                (m.start, phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164))
                for m in matches
            ]
            text = _blank(text, [(m.start, m.end) for m in matches])
        return _unique(number for _, number in sorted(found)), text

    def _amounts(self, text: str) -> tuple[list[dict[str, Any]], str]:
        amounts, spans = [], []
        for match in _AMOUNT.finditer(text):
            price = Price.fromstring(match.group())
            if price.amount_float is None:
                continue
            currency = _CURRENCIES[match.group("before") or match.group("after")]
            amounts.append({"value": price.amount_float, "currency": currency, "text": match[0]})
            spans.append(match.span())
        return amounts, _blank(text, spans)

    def _date_languages(self, text: str) -> list[str]:
        """The three likeliest languages dateparser knows, best first.

        More than one because short texts fool the identifier: a German
        sentence of six words can come out as Luxembourgish.
        """
        ranked = (lang for lang, _ in self._identifier.rank(text) if lang in DATEPARSER_LANGUAGES)
        return [next(ranked, "en"), *itertools.islice(ranked, 2)]

    def _search_dates(
        self, text: str, languages: list[str], base: datetime
    ) -> list[tuple[str, datetime]]:
        settings = {
            "PREFER_DATES_FROM": "past",
            "RELATIVE_BASE": base,
            "REQUIRE_PARTS": ["day", "month"],
            # Numeric dates: month first in English (US usage), day first elsewhere.
            "DATE_ORDER": "MDY" if languages[0] == "en" else "DMY",
        }
        with self._dates_lock:
            return search_dates(text, languages=languages, settings=settings) or []

    def _dates(self, text: str, languages: list[str]) -> list[str]:
        """Absolute dates as YYYY-MM-DD.

        Relative ones ("yesterday", "after 2 days") are dropped: their date
        depends on when the ticket was written, which the text does not say.
        A mention is relative if its day moves when "now" moves. So is one
        whose day is not written as a number: dateparser reads "März 2025 mit
        einem" ("March 2025 with a") as 1 March. So only the text near digits
        is scanned.
        """
        now = self._now()
        found: list[tuple[str, datetime]] = []
        moved: dict[str, datetime] = {}
        for piece in near_digits(text):  # the rest cannot hold a date kept here
            checkpoint()
            found += self._search_dates(piece, languages, now)
            moved.update(self._search_dates(piece, languages, now - timedelta(days=45)))
        return _unique(
            date.date().isoformat()
            for mention, date in found
            if _DATE_SHAPE.search(mention)
            and re.search(rf"(?<!\d)0?{date.day}(?!\d)", mention)
            and mention in moved
            and (moved[mention].month, moved[mention].day) == (date.month, date.day)
        )

    # -- summaries ---------------------------------------------------------------------------

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
        sentiment = _given(data, "sentiment", "score", float)
        if sentiment is None:
            sentiment = self._sentiment(text)["score"]
        checkpoint()
        amounts = _given(data, "entities", "amounts", list)
        if amounts is None:
            amounts = self._amounts(text)[0]
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
            else self._extract_entities(text)
        )
        label = _given(data, "sentiment", "label", str) or self._sentiment(text)["label"]
        return {"reply": _reply(triage, entities, label), "language": "en"}


def _given(data: Mapping[str, Any], obj: str, key: str, kind: type) -> Any:
    """data[obj][key] if an earlier step supplied it with the right type, else None."""
    inner = data.get(obj)
    value = inner.get(key) if isinstance(inner, Mapping) else None
    if kind is float:  # JSON (and protobuf Struct) numbers may arrive as int or float
        return float(value) if isinstance(value, int | float) else None
    return value if isinstance(value, kind) else None


_INTENT_LINES = {
    "refund": "We have received your request for a refund{amount} for {order}, and our billing "
    "team will process it. You will receive a confirmation email as soon as the refund "
    "has been issued.",
    "replacement": "We will arrange a replacement for {product} from {order} and email you "
    "the return label and delivery details.",
    "delivery": "We are checking the delivery of {order} with our carrier and will send you an "
    "update with the tracking details.",
    "billing": "We are reviewing the charge{amount} for {order}. If it was taken in error, we "
    "will correct it and confirm by email.",
    "technical": "Our technical support team will look into the problem with {product} from "
    "{order}. In the "
    "meantime, restarting it and installing the latest firmware update often helps.",
    "account": "We will help you regain access to your account. For your security, please use "
    "the password reset link on our sign-in page; we will never ask for your password by email.",
    "cancellation": "We have received your request to cancel {order} and will confirm the "
    "cancellation by email{amount_refund}.",
    "complaint": "Thank you for telling us about your experience. We have passed your feedback "
    "to the team responsible, and a supervisor will review your case.",
    "general": "Thank you for your message. A member of our team will look into it and get back "
    "to you shortly.",
}


def _reply(triage: Mapping[str, Any], entities: Mapping[str, Any], sentiment: str) -> str:
    """Greeting, an apology if the customer is upset, the intent's answer, priority, sign-off."""
    orders = [o for o in entities.get("order_ids") or () if isinstance(o, str)]
    products = [p for p in entities.get("products") or () if isinstance(p, str)]
    amounts = [
        a["text"]
        for a in entities.get("amounts") or ()
        if isinstance(a, Mapping) and isinstance(a.get("text"), str)
    ]
    order = (
        f"order {orders[0]}"
        if len(orders) == 1
        else f"orders {', '.join(orders[:-1])} and {orders[-1]}"
        if orders
        else "your order"
    )
    intent = triage.get("intent")
    sentences = []
    if sentiment == "negative":
        sentences.append(f"We are very sorry for the trouble you have had with {order}.")
    template = (
        _INTENT_LINES.get(intent, _INTENT_LINES["general"])
        if isinstance(intent, str)
        else _INTENT_LINES["general"]
    )
    sentences.append(
        template.format(
            order=order,
            product=f"the {products[0]}" if products else "your device",
            amount=f" of {amounts[0]}" if amounts else "",
            amount_refund=f", including the refund of {amounts[0]}" if amounts else "",
        )
    )
    urgency = triage.get("urgency")
    if urgency == "critical":
        sentences.append(
            "We have escalated your case to a senior agent, who will contact you as a priority."
        )
    elif urgency == "high":
        sentences.append("We have given your case priority.")
    return "Hello,\n\n" + " ".join(sentences) + "\n\nKind regards,\nCustomer Support"
