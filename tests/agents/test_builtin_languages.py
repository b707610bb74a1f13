"""The builtin backend reads customers' tickets in every language it claims: sentiment, intent
and language on real complaints, with the labels a person would give them."""

from __future__ import annotations

from typing import Any

import pytest

from agentmesh.agents.builtin import BuiltinBackend
from agentmesh.server.skills import SKILLS, output_violations


@pytest.fixture(scope="module")
def backend() -> BuiltinBackend:
    return BuiltinBackend()


async def run(backend: BuiltinBackend, skill: str, text: str) -> dict[str, Any]:
    result = await backend.run(SKILLS[skill], {"text": text})
    assert output_violations(SKILLS[skill], result.output) == []
    return result.output


#: (language, text, sentiment label, intent)
TICKETS = [
    # Reported: negative tickets that read as positive or neutral, refunds read as general.
    (
        "nl",
        "Mijn koffiezetapparaat is kapot aangekomen. Ik wil mijn geld terug! "
        "Dit is echt onacceptabel, ik ben zeer teleurgesteld.",
        "negative",
        "refund",
    ),
    (
        "pl",
        "Zamówiony ekspres do kawy przyszedł uszkodzony. Chcę zwrotu pieniędzy! "
        "To jest skandal, jestem bardzo rozczarowany.",
        "negative",
        "refund",
    ),
    (
        "en",
        "This is unacceptable. You charged me twice and now my account is overdrawn. "
        "Please fix this today.",
        "negative",
        "billing",
    ),
    (
        "it",
        "Il mio orologio ha fatto fumo mentre era in carica. Sono molto preoccupato.",
        "negative",
        "technical",
    ),
    (
        "en",
        "The heating will not switch on and the house is freezing. We have a baby at home, "
        "please send someone.",
        "negative",
        "technical",
    ),
    # More of each language.
    (
        "nl",
        "Mijn pakket is nog steeds niet aangekomen, al twee weken te laat.",
        "negative",
        "delivery",
    ),
    ("nl", "Bedankt voor de snelle levering, ik ben erg tevreden!", "positive", "delivery"),
    ("pl", "Paczka nie dotarła, kurier jej zgubił. Jestem niezadowolony.", "negative", "delivery"),
    ("pl", "Dziękuję, wszystko działa idealnie, jestem bardzo zadowolony.", "positive", "general"),
    ("pl", "Proszę anulować moje zamówienie.", "neutral", "cancellation"),
    (
        "de",
        "Die Kaffeemaschine ist defekt und funktioniert nicht. Sehr enttäuscht!",
        "negative",
        "technical",
    ),
    ("de", "Vielen Dank, die Lieferung kam schnell und alles ist perfekt.", "positive", "delivery"),
    ("fr", "Mon colis n'est jamais arrivé, c'est inacceptable !", "negative", "delivery"),
    ("fr", "Merci beaucoup, je suis très satisfaite du remplacement.", "positive", "replacement"),
    (
        "es",
        "El monitor llegó roto, quiero un reembolso. Estoy muy decepcionado.",
        "negative",
        "refund",
    ),
    ("es", "Gracias, el servicio fue excelente.", "positive", "general"),
    ("pt", "Fui cobrado duas vezes, isso é um absurdo!", "negative", "billing"),
    ("pt", "Obrigada, o produto chegou perfeito.", "positive", "general"),
    (
        "it",
        "Il pacco è in ritardo e il corriere non risponde. Inaccettabile.",
        "negative",
        "delivery",
    ),
    ("it", "Grazie mille, sono molto soddisfatta dell'assistenza.", "positive", "general"),
    (
        "en",
        "My order never arrived and nobody answers my emails. I'm fed up.",
        "negative",
        "delivery",
    ),
    ("en", "Thanks a lot, the replacement works perfectly!", "positive", "replacement"),
]


@pytest.mark.parametrize(("language", "text", "label", "intent"), TICKETS)
async def test_sentiment_intent_and_language(
    backend: BuiltinBackend, language: str, text: str, label: str, intent: str
) -> None:
    assert (await run(backend, "detect_language", text))["language"] == language
    assert (await run(backend, "sentiment", text))["label"] == label
    assert (await run(backend, "classify", text))["intent"] == intent


@pytest.mark.parametrize(
    ("text", "language"),
    [("hello there", "en"), ("thanks", "en"), ("merci beaucoup", "fr"), ("Danke schön", "de")],
)
async def test_short_texts_read_as_a_customers_language_with_honest_confidence(
    backend: BuiltinBackend, text: str, language: str
) -> None:
    found = await run(backend, "detect_language", text)
    assert found["language"] == language
    assert found["confidence"] < 0.99  # a few words are not proof


async def test_a_negated_positive_is_negative(backend: BuiltinBackend) -> None:
    for text in ("Ich bin nicht zufrieden.", "Ik ben niet tevreden.", "Non sono soddisfatto."):
        assert (await run(backend, "sentiment", text))["label"] == "negative", text


async def test_a_complaint_without_a_request_is_a_complaint(backend: BuiltinBackend) -> None:
    text = "Your agent was rude and the service is terrible. Unacceptable."
    assert (await run(backend, "classify", text))["intent"] == "complaint"
