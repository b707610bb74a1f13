"""How a skill's answer is generated: the schema a grammar enforces, token budgets,
stop sequences, temperatures, cancellation and timeouts of streamed calls, and the
worker's capacity following the model server's slots."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from agentmesh.agents import generation
from agentmesh.agents.backends import make_model_backend
from agentmesh.agents.builtin import BuiltinBackend
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.llm import ModelConfig
from agentmesh.agents.runtime import Worker
from agentmesh.agents.serverinfo import server_root, server_slots
from agentmesh.errors import DeadlineExceeded
from agentmesh.server.skills import SKILLS, output_violations
from tests.agents.test_llm_structured import (
    VALID,
    FakeAnthropic,
    FakeOpenAI,
    anthropic_backend,
    openai_backend,
)

SENTIMENT = SKILLS["sentiment"]


# -- the answer schema ------------------------------------------------------------------


def _walk(answer: Any, contract: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Pairs of (answer node, contract node) at the same place in both schemas."""
    yield path, answer, contract
    for key, sub in answer.get("properties", {}).items():
        yield from _walk(sub, contract["properties"][key], f"{path}.{key}")
    if "items" in answer:
        yield from _walk(answer["items"], contract["items"], f"{path}[]")


@pytest.mark.parametrize("name", sorted(SKILLS))
def test_every_value_the_answer_schema_allows_is_valid_against_the_contract(name: str) -> None:
    skill = SKILLS[name]
    for path, answer, contract in _walk(generation.answer_schema(skill), skill.output_schema, ""):
        validator = Draft202012Validator(
            contract, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for value in answer.get("enum", []):
            assert validator.is_valid(value), (path, value)
        # Tighter, never looser: every bound of the contract is still there.
        for bound in ("required", "additionalProperties", "minLength", "minItems", "maxItems"):
            if bound in contract and "enum" not in answer and not isinstance(contract[bound], dict):
                assert answer[bound] == contract[bound], (path, bound)


def test_bounded_numbers_and_language_codes_become_enums() -> None:
    answer = generation.answer_schema(SENTIMENT)
    score = answer["properties"]["score"]["enum"]
    assert score[0] == -1 and score[-1] == 1 and 0 in score and -0.85 in score and len(score) == 41
    language = generation.answer_schema(SKILLS["detect_language"])["properties"]["language"]
    assert {"en", "de", "fr", "es", "pt", "it"} <= set(language["enum"])
    confidence = generation.answer_schema(SKILLS["classify"])["properties"]["confidence"]
    assert confidence["enum"][:3] == [0, 0.05, 0.1] and confidence["enum"][-1] == 1
    # The contract itself is unchanged: the builtin backend's outputs stay valid.
    assert SENTIMENT.output_schema["properties"]["score"] == {
        "type": "number",
        "minimum": -1,
        "maximum": 1,
    }


def test_patterns_avoid_the_escapes_grammars_mishandle() -> None:
    entities = generation.answer_schema(SKILLS["extract_entities"])
    pattern = entities["properties"]["phone_numbers"]["items"]["pattern"]
    assert "\\" not in pattern
    contract = SKILLS["extract_entities"].output_schema["properties"]["phone_numbers"]["items"]
    for number in ("+4915123456789", "+1", "+12", "4915123456789", "+0123", "+1234567890123456"):
        assert bool(re.search(pattern, number)) == bool(re.search(contract["pattern"], number))


def test_the_date_pattern_allows_real_dates_only() -> None:
    dates = generation.answer_schema(SKILLS["extract_entities"])["properties"]["dates"]
    assert dates["items"] == {"type": "string", "pattern": generation.DATE_PATTERN}
    allowed = 0
    for year in (1000, 2024, 2025, 2999):
        for month in range(1, 13):
            for day in range(1, 32):
                text = f"{year}-{month:02d}-{day:02d}"
                if re.search(generation.DATE_PATTERN, text):
                    allowed += 1
                    datetime.date.fromisoformat(text)  # a real date
                    assert not output_violations(SKILLS["extract_entities"], _entities(text))
    assert allowed == 4 * 365  # every day of the year but 29 February
    for refused in ("2024-11-31", "2024-02-30", "0000-01-01", "2024-13-01", "2024-1-01"):
        assert not re.search(generation.DATE_PATTERN, refused), refused


def _entities(date: str) -> dict[str, Any]:
    empty: dict[str, Any] = {k: [] for k in SKILLS["extract_entities"].output_schema["required"]}
    return {**empty, "dates": [date]}


def test_free_strings_and_arrays_are_bounded() -> None:
    summary = generation.answer_schema(SKILLS["summarize"])["properties"]["summary"]
    assert summary["maxLength"] == generation.STRING_LENGTHS["summary"]
    entities = generation.answer_schema(SKILLS["extract_entities"])["properties"]
    assert entities["products"]["maxItems"] == generation.DEFAULT_MAX_ITEMS
    assert entities["products"]["items"]["maxLength"] == generation.DEFAULT_STRING_LENGTH
    # A nested "text" (an amount as written) is not prose: the short default applies.
    amount_text = entities["amounts"]["items"]["properties"]["text"]
    assert amount_text["maxLength"] == generation.DEFAULT_STRING_LENGTH


def _largest(schema: dict[str, Any]) -> Any:
    """The longest answer the schema allows (enough for the skills' schemas)."""
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(json.dumps(v)))
    kind = schema.get("type")
    if kind == "object":
        return {k: _largest(v) for k, v in schema["properties"].items()}
    if kind == "array":
        return [_largest(schema["items"])] * schema["maxItems"]
    if schema.get("pattern") == generation.DATE_PATTERN:
        return "2025-03-05"
    if "pattern" in schema:
        return "+123456789012345"
    if "maxLength" in schema:
        return "x" * schema["maxLength"]
    return -12345.678


@pytest.mark.parametrize(
    "name",
    [
        "extract_entities",
        "detect_language",
        "sentiment",
        "summarize",
        "classify",
        "draft_reply",
        "translate",
    ],
)
def test_the_token_budget_covers_the_largest_answer(name: str) -> None:
    skill = SKILLS[name]
    largest = _largest(generation.answer_schema(skill))
    text = json.dumps(largest, ensure_ascii=False)
    assert generation.token_budget(skill) >= len(text) / generation.CHARS_PER_TOKEN
    assert not output_violations(skill, largest)


def test_a_language_code_needs_a_small_budget() -> None:
    assert generation.token_budget(SKILLS["detect_language"]) <= 64
    assert generation.token_budget(SKILLS["draft_reply"]) > generation.token_budget(SENTIMENT)


def test_calls_ask_for_the_budget_within_max_tokens() -> None:
    config = ModelConfig("openai", "m", max_tokens=1024)
    assert config.max_tokens_for(SENTIMENT) == generation.token_budget(SENTIMENT)
    assert ModelConfig("openai", "m", max_tokens=5).max_tokens_for(SENTIMENT) == 5


def test_temperature_suits_the_skill_on_a_compatible_server() -> None:
    local = ModelConfig("openai", "m", base_url="http://127.0.0.1:1/v1")
    assert local.temperature_for(SKILLS["classify"]) == generation.EXTRACTION_TEMPERATURE
    assert local.temperature_for(SKILLS["draft_reply"]) == generation.WRITING_TEMPERATURE
    # A provider's own API keeps its default; a configured temperature applies everywhere.
    assert ModelConfig("openai", "m").temperature_for(SKILLS["classify"]) is None
    assert ModelConfig("openai", "m", temperature=0.7).temperature_for(SENTIMENT) == 0.7
    anthropic = ModelConfig("anthropic", "m", base_url="http://127.0.0.1:1")
    assert anthropic.body(SKILLS["summarize"]) == {"temperature": generation.WRITING_TEMPERATURE}


async def test_openai_local_call_sends_the_skill_temperature() -> None:
    client = FakeOpenAI(json.dumps(VALID))
    await openai_backend(client, base_url="http://127.0.0.1:1/v1").run(SENTIMENT, {"text": "x"})
    assert client.calls[0]["temperature"] == 0.0


# -- cancellation and timeouts ------------------------------------------------------------


async def _cancel_mid_answer(backend: Any, streams: list[Any]) -> None:
    task = asyncio.create_task(backend.run(SENTIMENT, {"text": "awful"}))
    for _ in range(100):
        await asyncio.sleep(0)
        if streams:
            break
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_openai_call_closes_its_stream() -> None:
    client = FakeOpenAI(json.dumps(VALID), hang=True)
    await _cancel_mid_answer(openai_backend(client), client.streams)
    (stream,) = client.streams
    assert stream.closed


async def test_a_cancelled_anthropic_call_closes_its_stream() -> None:
    client = FakeAnthropic(VALID, hang=True)
    await _cancel_mid_answer(anthropic_backend(client), client.streams)
    (stream,) = client.streams
    assert stream.closed


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_model_timeout_bounds_the_whole_streamed_answer(provider: str) -> None:
    if provider == "openai":
        client: Any = FakeOpenAI(json.dumps(VALID), hang=True)
        backend: Any = openai_backend(client, timeout=0.05)
    else:
        client = FakeAnthropic(VALID, hang=True)
        backend = anthropic_backend(client, timeout=0.05)
    with pytest.raises(DeadlineExceeded) as caught:
        await backend.run(SENTIMENT, {"text": "awful"})
    assert caught.value.reason == "MODEL_TIMEOUT"
    assert client.streams[0].closed


# -- concurrency: the server's slots ------------------------------------------------------


class _Props(BaseHTTPRequestHandler):
    props: dict[str, Any] = {}
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        if self.path != "/props" or not self.props:
            self.send_error(404)
            return
        body = json.dumps(self.props).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def props_server() -> Iterator[tuple[str, type[_Props]]]:
    handler = type("Props", (_Props,), {"props": {}, "seen_auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_server_root_drops_v1() -> None:
    assert server_root("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080"
    assert server_root("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_llama_cpp_slots_are_read_from_props(props_server: tuple[str, Any]) -> None:
    url, handler = props_server
    handler.props = {"total_slots": 3, "model_alias": "m"}
    assert server_slots(f"{url}/v1", "sk-local") == 3
    assert handler.seen_auth == ["Bearer sk-local"]


@pytest.mark.parametrize("props", [{}, {"total_slots": 0}, {"total_slots": "2"}, {"x": 1}])
def test_a_server_that_does_not_say_has_no_slot_count(
    props_server: tuple[str, Any], props: dict[str, Any]
) -> None:
    url, handler = props_server
    handler.props = props
    assert server_slots(url) is None


def test_no_server_has_no_slot_count() -> None:
    assert server_slots("http://127.0.0.1:9/v1", timeout=0.5) is None


def test_a_model_backend_takes_the_servers_slots_unless_configured(
    props_server: tuple[str, Any],
) -> None:
    url, handler = props_server
    handler.props = {"total_slots": 2}
    env = {"AGENTMESH_MODEL_BASE_URL": f"{url}/v1", "AGENTMESH_MODEL": "m"}
    assert make_model_backend("openai", env).concurrency == 2
    assert (
        make_model_backend("anthropic", {**env, "AGENTMESH_MODEL_BASE_URL": url}).concurrency == 2
    )
    configured = {**env, "AGENTMESH_MODEL_CONCURRENCY": "1"}
    handler.seen_auth.clear()
    assert make_model_backend("openai", configured).concurrency == 1
    assert handler.seen_auth == []  # a configured limit asks the server nothing
    with pytest.raises(ValueError, match="AGENTMESH_MODEL_CONCURRENCY"):
        ModelConfig.from_env("openai", {"AGENTMESH_MODEL_CONCURRENCY": "-1"})


async def test_the_worker_capacity_follows_the_model_concurrency() -> None:
    backend = openai_backend(FakeOpenAI(), concurrency=2)
    worker = Worker(WorkerConfig(capacity=4), backend)
    assert worker.capacity == 2
    assert worker.info().capacity == 2 and worker.health_report().capacity == 2
    # Without a limit (or with a larger one) the configured capacity stands.
    assert Worker(WorkerConfig(capacity=4), BuiltinBackend()).capacity == 4
    assert (
        Worker(WorkerConfig(capacity=3), openai_backend(FakeOpenAI(), concurrency=8)).capacity == 3
    )
