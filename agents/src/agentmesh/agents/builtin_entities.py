"""The builtin backend's entity finders: emails, order ids, products, phones, amounts, dates.

phonenumbers (E.164), dateparser (ISO dates) and price-parser (amounts);
emails and order ids by regular expression; products from a catalogue
(`data/products.txt` by default). Each finder searches what the earlier
ones left, so that one span is never two entities.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
from dateparser.data.languages_info import language_order as DATEPARSER_LANGUAGES
from dateparser.search import search_dates
from price_parser import Price
from py3langid.langid import LanguageIdentifier

from agentmesh.agents.builtin_limits import checkpoint, near_digits
from agentmesh.agents.lexicons import DATA, fold

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

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
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


def blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """Mask the spans, so later searches skip them, keeping offsets.

    The mask is not spaces: dateparser would join the words either side, and
    "comprei um [product] em 1 de março" would become "um em 1", 1 January.
    """
    chars = list(text)
    for start, end in spans:
        chars[start:end] = "|" * (end - start)
    return "".join(chars)


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class EntityFinder:
    """Finds a text's entities; built once per backend, used from several threads."""

    def __init__(
        self,
        identifier: LanguageIdentifier,
        *,
        products: Iterable[str] | None = None,
        order_id_pattern: str | re.Pattern[str] = DEFAULT_ORDER_ID_PATTERN,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        now: Callable[[], datetime] = datetime.now,
        languages: Iterable[str] = (),
    ) -> None:
        """`identifier` ranks a text's languages for dateparser; `now` anchors dates written
        without a year; dateparser's data for `languages` is loaded now, so no call pays for it."""
        names = sorted(load_products() if products is None else products, key=len, reverse=True)
        self._products = re.compile(
            "|".join(r"(?<!\w)" + r"\s+".join(map(re.escape, n.split())) + r"(?!\w)" for n in names)
            or r"(?!)",
            re.IGNORECASE,
        )
        self._canonical = {fold(" ".join(n.split())): n for n in names}
        self._order_ids = re.compile(order_id_pattern)
        self._phone_regions = tuple(phone_regions)
        self._identifier = identifier
        self._now = now
        # dateparser keeps shared caches that it fills lazily; one call at a time.
        self._dates_lock = threading.Lock()
        for language in languages:  # dateparser loads a language on its first use
            self.search_dates("3/3/2025", [language], now())

    def extract(self, text: str) -> dict[str, Any]:
        """Each finder searches what earlier ones left: an order id is not also a phone number,
        and "$249.99 on March 3rd" is not read as a date in 1999."""
        emails = [(m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]
        rest = blank(text, [(s, e) for s, e, _ in emails])
        checkpoint()
        order_ids = [
            (m.start(), m.end(), next((g for g in m.groups() if g), m.group()))
            for m in self._order_ids.finditer(rest)
        ]
        rest = blank(rest, [(s, e) for s, e, _ in order_ids])
        products = [(m.start(), m.end()) for m in self._products.finditer(rest)]
        product_names = [self._canonical[fold(" ".join(rest[s:e].split()))] for s, e in products]
        rest = blank(rest, products)
        checkpoint()
        phones, rest = self.phone_numbers(rest)
        checkpoint()
        amounts, rest = self.amounts(rest)
        checkpoint()
        return {
            "order_ids": unique(i for _, _, i in order_ids),
            "emails": unique(e for _, _, e in emails),
            "phone_numbers": phones,
            "products": unique(product_names),
            "dates": self.dates(rest, self.date_languages(text)),
            "amounts": amounts,
        }

    def phone_numbers(self, text: str) -> tuple[list[str], str]:
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
            text = blank(text, [(m.start, m.end) for m in matches])
        return unique(number for _, number in sorted(found)), text

    def amounts(self, text: str) -> tuple[list[dict[str, Any]], str]:
        amounts, spans = [], []
        for match in _AMOUNT.finditer(text):
            price = Price.fromstring(match.group())
            if price.amount_float is None:
                continue
            currency = _CURRENCIES[match.group("before") or match.group("after")]
            amounts.append({"value": price.amount_float, "currency": currency, "text": match[0]})
            spans.append(match.span())
        return amounts, blank(text, spans)

    def date_languages(self, text: str) -> list[str]:
        """The three likeliest languages dateparser knows, best first.

        More than one because short texts fool the identifier: a German
        sentence of six words can come out as Luxembourgish.
        """
        ranked = (lang for lang, _ in self._identifier.rank(text) if lang in DATEPARSER_LANGUAGES)
        return [next(ranked, "en"), *itertools.islice(ranked, 2)]

    def search_dates(
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

    def dates(self, text: str, languages: list[str]) -> list[str]:
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
            found += self.search_dates(piece, languages, now)
            moved.update(self.search_dates(piece, languages, now - timedelta(days=45)))
        return unique(
            date.date().isoformat()
            for mention, date in found
            if _DATE_SHAPE.search(mention)
            and re.search(rf"(?<!\d)0?{date.day}(?!\d)", mention)
            and mention in moved
            and (moved[mention].month, moved[mention].day) == (date.month, date.day)
        )

    # -- summaries ---------------------------------------------------------------------------
