"""The builtin backend: real libraries on known texts, and every example ticket."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentmesh.agents.builtin import BuiltinBackend
from agentmesh.errors import Unimplemented
from agentmesh.server.skills import SKILLS, output_violations
from agentmesh.usage import Usage

EXAMPLES = Path(__file__).parents[2] / "examples"
TICKETS = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))["text"]
    for path in sorted((EXAMPLES / "tickets").glob("*.json"))
}
DOCUMENT = (EXAMPLES / "long_document.txt").read_text(encoding="utf-8")
NOW = datetime(2025, 3, 15, 12, 0)

KNOWN = (
    "Hi, my order ORD-123456 arrived on March 3rd with a cracked screen. I paid $249.99 on "
    "March 3rd for the AeroBook 14. Call me at +1 415 555 0132 or write to "
    "anna.smith@example.com."
)


@pytest.fixture(scope="module")
def backend() -> BuiltinBackend:
    return BuiltinBackend(now=lambda: NOW)


async def run(backend: BuiltinBackend, skill: str, **data: Any) -> dict[str, Any]:
    result = await backend.run(SKILLS[skill], data)
    assert output_violations(SKILLS[skill], result.output) == []
    return result.output


# -- the interface ------------------------------------------------------------------------


def test_builtin_offers_every_skill_but_translate_and_plan(backend: BuiltinBackend) -> None:
    # Neither can be done honestly without a model.
    assert backend.capabilities() == frozenset(SKILLS) - {"translate", "plan"}
    assert (backend.name, backend.model) == ("builtin", "")


async def test_translate_is_refused(backend: BuiltinBackend) -> None:
    with pytest.raises(Unimplemented):
        await backend.run(SKILLS["translate"], {"text": "Hallo", "target_language": "en"})


async def test_builtin_costs_nothing(backend: BuiltinBackend) -> None:
    result = await backend.run(SKILLS["sentiment"], {"text": "Fine."})
    assert result.usage == Usage(input_tokens=0, output_tokens=0, cost_usd=0.0)
    assert result.model == ""


async def test_concurrent_calls_give_the_same_answers_as_sequential_ones(
    backend: BuiltinBackend,
) -> None:
    skills = ("extract_entities", "summarize", "classify")
    calls = [(skill, {"text": text}) for text in TICKETS.values() for skill in skills]
    sequential = [(await backend.run(SKILLS[s], d)).output for s, d in calls]
    concurrent = await asyncio.gather(*(backend.run(SKILLS[s], d) for s, d in calls))
    assert [r.output for r in concurrent] == sequential


# -- entities -------------------------------------------------------------------------------


async def test_entities_in_a_known_sentence(backend: BuiltinBackend) -> None:
    assert await run(backend, "extract_entities", text=KNOWN) == {
        "order_ids": ["ORD-123456"],
        "emails": ["anna.smith@example.com"],
        "phone_numbers": ["+14155550132"],
        "products": ["AeroBook 14"],
        # Not also 1999-03-03 from "99 on March 3rd": the amount is masked first.
        "dates": ["2025-03-03"],
        "amounts": [{"value": 249.99, "currency": "USD", "text": "$249.99"}],
    }


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("Re: order #A1B2C3, still nothing", "A1B2C3"),
        ("Ticket about #784512 please", "784512"),
        ("Meine Bestellnummer 884213 ist falsch", "884213"),
        ("pedido nº 552910", "552910"),
        ("see ord-99887766.", "ord-99887766"),
    ],
)
async def test_order_id_forms(backend: BuiltinBackend, text: str, order_id: str) -> None:
    assert (await run(backend, "extract_entities", text=text))["order_ids"] == [order_id]


async def test_words_after_order_are_not_order_ids(backend: BuiltinBackend) -> None:
    text = "I ordered 3 items and my order was late by 2 days."
    assert (await run(backend, "extract_entities", text=text))["order_ids"] == []


async def test_order_id_pattern_and_catalogue_are_configurable() -> None:
    backend = BuiltinBackend(
        order_id_pattern=r"\bT-(?P<id>\d+)", products=["Frobnicator 3000"], now=lambda: NOW
    )
    entities = await run(
        backend, "extract_entities", text="Case T-42: my frobnicator 3000 and my AeroBook 14 broke."
    )
    assert entities["order_ids"] == ["42"]
    assert entities["products"] == ["Frobnicator 3000"]


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("Ich habe 249,99 € bezahlt.", (249.99, "EUR", "249,99 €")),
        ("Total: EUR 80", (80.0, "EUR", "EUR 80")),
        ("It cost £15.", (15.0, "GBP", "£15")),
        ("Paguei R$ 1.899,00 ontem", (1899.0, "BRL", "R$ 1.899,00")),
        ("That was $1,249.00 in total", (1249.0, "USD", "$1,249.00")),
    ],
)
async def test_amounts_need_a_currency_and_keep_their_text(
    backend: BuiltinBackend, text: str, amount: tuple[float, str, str]
) -> None:
    [found] = (await run(backend, "extract_entities", text=text))["amounts"]
    assert (found["value"], found["currency"], found["text"]) == amount


async def test_numbers_without_a_currency_are_not_amounts(backend: BuiltinBackend) -> None:
    text = "I bought 3 units, 2 of them broke after 12 hours."
    assert (await run(backend, "extract_entities", text=text))["amounts"] == []


async def test_phone_numbers_national_and_international(backend: BuiltinBackend) -> None:
    text = (
        "Call (415) 555-0132, or +1 415 555 0132 again, or my German mobile "
        "0151 23456789, or +34 612 345 678."
    )
    phones = (await run(backend, "extract_entities", text=text))["phone_numbers"]
    assert phones == ["+14155550132", "+4915123456789", "+34612345678"]


async def test_dates_are_iso_with_the_local_day_order(backend: BuiltinBackend) -> None:
    # Short enough that py3langid calls it Luxembourgish; "04.03.2025" is also
    # a valid Hamburg phone number to phonenumbers.
    german = "Bestellt am 04.03.2025, geliefert am 7. März."
    entities = await run(backend, "extract_entities", text=german)
    assert entities["dates"] == ["2025-03-04", "2025-03-07"]
    assert entities["phone_numbers"] == []
    english = "Ordered 03/04/2025 and delivered on 2025-03-07."
    assert (await run(backend, "extract_entities", text=english))["dates"] == [
        "2025-03-04",
        "2025-03-07",
    ]


async def test_dates_without_a_year_are_the_latest_before_now(backend: BuiltinBackend) -> None:
    text = "It broke on December 24th, and I wrote to you on March 1st."
    assert (await run(backend, "extract_entities", text=text))["dates"] == [
        "2024-12-24",
        "2025-03-01",
    ]


async def test_relative_dates_and_stray_numbers_are_not_dates(backend: BuiltinBackend) -> None:
    text = "It arrived yesterday and broke after 2 days. Ticket 2 of 3, 5 units."
    assert (await run(backend, "extract_entities", text=text))["dates"] == []


# -- language, sentiment, summaries ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Mein Laptop kam kaputt an. Ich möchte mein Geld zurück!", "de"),
        ("Bonjour, ma commande n'est jamais arrivée.", "fr"),
        ("Where is my parcel? It has been two weeks.", "en"),
    ],
)
async def test_language_detection(backend: BuiltinBackend, text: str, language: str) -> None:
    found = await run(backend, "detect_language", text=text)
    assert found["language"] == language
    assert found["confidence"] > 0.5


async def test_sentiment_labels(backend: BuiltinBackend) -> None:
    negative = await run(
        backend, "sentiment", text="This is terrible. The laptop arrived broken and I am furious."
    )
    assert negative["label"] == "negative" and negative["score"] < -0.5
    positive = await run(backend, "sentiment", text="Thank you so much, great service!")
    assert positive["label"] == "positive" and positive["score"] > 0.5
    assert (await run(backend, "sentiment", text="The parcel is blue."))["label"] == "neutral"


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


async def test_summary_sentences_come_from_the_text(backend: BuiltinBackend) -> None:
    summary = (await run(backend, "summarize", text=DOCUMENT, max_sentences=4))["summary"]
    picked = sentences_of(summary)
    assert 1 <= len(picked) <= 4
    assert all(sentence in DOCUMENT for sentence in picked)


async def test_summary_of_several_texts(backend: BuiltinBackend) -> None:
    texts = [
        "The router drops the connection every evening. A reset did not help.",
        "The firmware update fixed the router. Customers stopped writing about it.",
        "Refunds took nine days. The warehouse inspection is the slowest part.",
    ]
    summary = (await run(backend, "summarize", texts=texts))["summary"]
    assert 1 <= len(sentences_of(summary)) <= 3
    assert all(any(s in text for text in texts) for s in sentences_of(summary))


async def test_summary_is_never_empty(backend: BuiltinBackend) -> None:
    # An all-capitals line is a heading to sumy, which it leaves out of summaries.
    assert (await run(backend, "summarize", text="URGENT REFUND NEEDED"))["summary"] == (
        "URGENT REFUND NEEDED"
    )


# -- classification and replies ---------------------------------------------------------------


async def test_a_refund_request_is_a_refund(backend: BuiltinBackend) -> None:
    triage = await run(
        backend, "classify", text="The blender arrived broken. Please refund my money."
    )
    assert triage["intent"] == "refund"
    assert triage["urgency"] == "normal"
    assert 0.5 < triage["confidence"] <= 1


async def test_urgent_tickets_are_high_or_critical(backend: BuiltinBackend) -> None:
    triage = await run(backend, "classify", text="URGENT: my parcel has not arrived.")
    assert (triage["intent"], triage["urgency"]) == ("delivery", "high")
    german = await run(backend, "classify", text="Bitte dringend: Paket nicht angekommen.")
    assert german["urgency"] == "high"


async def test_safety_is_critical_and_no_rush_is_low(backend: BuiltinBackend) -> None:
    smoke = await run(backend, "classify", text="My charger started to smoke last night.")
    assert smoke["urgency"] == "critical"
    calm = await run(backend, "classify", text="Not urgent, no rush: how do I update firmware?")
    assert (calm["intent"], calm["urgency"]) == ("technical", "low")


async def test_given_sentiment_and_amounts_raise_urgency(backend: BuiltinBackend) -> None:
    text = "I want a refund for order ORD-123456."
    assert (await run(backend, "classify", text=text))["urgency"] == "normal"
    angry = {"label": "negative", "score": -0.9}
    assert (await run(backend, "classify", text=text, sentiment=angry))["urgency"] == "high"
    entities = {"amounts": [{"value": 1299.0, "currency": "EUR", "text": "1.299,00 €"}]}
    both = await run(backend, "classify", text=text, sentiment=angry, entities=entities)
    assert both["urgency"] == "critical"


async def test_no_evidence_is_general_at_even_odds(backend: BuiltinBackend) -> None:
    assert await run(backend, "classify", text="Hello there.") == {
        "intent": "general",
        "urgency": "normal",
        "confidence": 0.5,
    }


async def test_reply_names_the_order_and_amount_and_apologises(backend: BuiltinBackend) -> None:
    text = "This is terrible! Order ORD-123456 arrived broken. I paid $249.99. Refund me."
    reply = await run(backend, "draft_reply", text=text)
    assert reply["language"] == "en"
    assert "ORD-123456" in reply["reply"] and "$249.99" in reply["reply"]
    assert "sorry" in reply["reply"]
    assert "refund" in reply["reply"]
    assert await run(backend, "draft_reply", text=text) == reply


async def test_reply_follows_the_given_triage(backend: BuiltinBackend) -> None:
    reply = await run(
        backend,
        "draft_reply",
        text="Thanks, lovely product!",
        intent={"intent": "delivery", "urgency": "critical", "confidence": 0.9},
        entities={"order_ids": ["A1B2C3"], "amounts": [], "products": []},
        sentiment={"label": "positive", "score": 0.8},
    )
    assert "delivery of order A1B2C3" in reply["reply"]
    assert "senior agent" in reply["reply"]
    assert "sorry" not in reply["reply"]


# -- the example tickets ------------------------------------------------------------------------

EXPECTED = {  # file name prefix: (language, intent)
    "01": ("en", "refund"),
    "02": ("en", "delivery"),
    "03": ("en", "billing"),
    "04": ("en", "technical"),
    "05": ("en", "account"),
    "06": ("en", "cancellation"),
    "07": ("de", "refund"),
    "08": ("de", "delivery"),
    "09": ("fr", "replacement"),
    "10": ("es", "refund"),
    "11": ("pt", "billing"),
    "12": ("it", "technical"),
}


def test_there_are_a_dozen_tickets_in_six_languages() -> None:
    assert [name[:2] for name in TICKETS] == sorted(EXPECTED)
    assert {name.rsplit("_", 1)[1] for name in TICKETS} == {"en", "de", "fr", "es", "pt", "it"}


@pytest.mark.parametrize("name", TICKETS)
async def test_every_skill_gives_valid_output_on_every_ticket(
    backend: BuiltinBackend, name: str
) -> None:
    outputs = {
        skill: await run(backend, skill, text=TICKETS[name])
        for skill in sorted(backend.capabilities())
    }
    language, intent = EXPECTED[name[:2]]
    assert outputs["detect_language"]["language"] == language
    assert outputs["classify"]["intent"] == intent
    entities = outputs["extract_entities"]
    assert entities["order_ids"] and entities["products"]
    assert entities["emails"] or entities["phone_numbers"]
