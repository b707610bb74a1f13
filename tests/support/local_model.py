"""The real local model for integration tests: one llama.cpp server per test session.

The integration tests' conftest.py offers the `local_model` fixture, so that
the whole session shares one server. The server demands an API key (a random
one, known to the tests), so that a wrong key gets the real 401 answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from agentmesh.agents.localmodel import MODEL_ALIAS, LocalModelConfig, LocalModelServer

__all__ = ["MODEL_ALIAS", "local_model"]


@pytest.fixture(scope="session")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    """A started llama-server with Gemma 3 270M on a free loopback port."""
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    config = LocalModelConfig(api_key=f"sk-local-{secrets.token_hex(16)}", verbosity=3)
    server = LocalModelServer(config, log=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
