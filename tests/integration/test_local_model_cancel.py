"""Cancellation reaches the model: a cancelled call frees the llama.cpp server's slot.

A call that only waits for the whole answer leaves the server generating
after the caller gave up (llama.cpp notices a closed connection only when
it writes to it); the backends stream, so closing the call stops the
generation. Checked with the server's own view of its slots (`/slots`).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from agentmesh.agents import generation, localmodel
from agentmesh.agents.backends import make_model_backend
from agentmesh.agents.localmodel import LocalModelServer
from agentmesh.errors import DeadlineExceeded
from agentmesh.server.skills import SKILLS, Skill
from tests.support.local_model import MODEL_ALIAS

pytestmark = [pytest.mark.integration, pytest.mark.llm]

KEY_ENV = "AGENTMESH_TEST_MODEL_KEY"

# An answer the grammar makes long (at least 6,000 characters, cut at MAX_TOKENS, which
# with the prompt fills a 2,048-token slot): without cancellation the server would keep
# generating it for several seconds after the caller is gone, even on a quiet machine.
LONG = Skill(
    name="summarize",
    description="Write a long summary.",
    input_schema=SKILLS["summarize"].input_schema,
    output_schema={
        "type": "object",
        # In parts: llama.cpp's grammars repeat a character at most about 2,000 times.
        "properties": {
            part: {"type": "string", "minLength": 1900, "maxLength": 1990}
            for part in ("beginning", "middle", "end")
        },
        "required": ["beginning", "middle", "end"],
        "additionalProperties": False,
    },
    instructions="Write a very long summary.",
)


def busy_slots(server: LocalModelServer) -> list[int]:
    request = urllib.request.Request(f"{server.base_url}/slots")
    request.add_header("Authorization", f"Bearer {server.config.api_key}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return [s["id"] for s in json.load(response) if s["is_processing"]]


async def wait_slots(server: LocalModelServer, busy: bool, timeout: float) -> float:
    """Seconds until some slot is busy (or all are free); AssertionError after timeout."""
    started = time.monotonic()
    while bool(await asyncio.to_thread(busy_slots, server)) != busy:
        assert time.monotonic() - started < timeout, f"slots still {'free' if busy else 'busy'}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(autouse=True)
def no_stop_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    """The long answer must not end early: a model made to write 6,000 characters may
    write a chat-turn marker among them, which would stop it (a test of stops elsewhere)."""
    monkeypatch.setattr(generation, "STOP_SEQUENCES", ())


def model_env(server: LocalModelServer, timeout: float = 120.0) -> dict[str, str]:
    return {
        "AGENTMESH_MODEL": MODEL_ALIAS,
        "AGENTMESH_MODEL_BASE_URL": server.openai_base_url,
        "AGENTMESH_API_KEY_ENV": KEY_ENV,
        KEY_ENV: server.config.api_key,
        "AGENTMESH_MODEL_TIMEOUT": str(timeout),
        "AGENTMESH_MODEL_MAX_TOKENS": "1800",
        "AGENTMESH_MODEL_EXTRA_BODY": localmodel.EXTRA_BODY,
    }


async def test_a_cancelled_call_frees_the_model_servers_slot(
    local_model: LocalModelServer,
) -> None:
    await wait_slots(local_model, busy=False, timeout=120)
    backend = make_model_backend("openai", model_env(local_model))
    call = asyncio.create_task(backend.run(LONG, {"text": "The history of coffee."}))
    await wait_slots(local_model, busy=True, timeout=60)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    freed = await wait_slots(local_model, busy=False, timeout=2.0)
    print(f"\nslot freed {freed:.2f} s after the call was cancelled")


async def test_a_timed_out_call_frees_the_model_servers_slot(
    local_model: LocalModelServer,
) -> None:
    await wait_slots(local_model, busy=False, timeout=120)
    # The timeout runs from the call's start: long enough to start generating, far too
    # short for 1,800 tokens.
    backend = make_model_backend("openai", model_env(local_model, timeout=4.0))
    call = asyncio.create_task(backend.run(LONG, {"text": "The history of coffee."}))
    await wait_slots(local_model, busy=True, timeout=4.0)
    with pytest.raises(DeadlineExceeded) as caught:
        await call
    assert caught.value.reason == "MODEL_TIMEOUT"
    await wait_slots(local_model, busy=False, timeout=2.0)
