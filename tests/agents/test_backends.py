"""Backends by name: a backend whose libraries are not installed says which extra to add."""

from __future__ import annotations

import sys

import pytest

from agentmesh.agents.backends import make_backend


@pytest.mark.parametrize(
    ("backend", "module", "extra"),
    [("openai", "openai", "openai"), ("anthropic", "anthropic", "anthropic"),
     ("builtin", "vaderSentiment", "builtin")],
)  # fmt: skip
def test_a_backend_without_its_library_names_the_extra(
    backend: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes `import module` fail as if it were not installed.
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    # The backends' modules import it again (the originals come back after the test).
    for name in [m for m in sys.modules if m.startswith("agentmesh.agents.")]:
        if name != "agentmesh.agents.backends":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    env = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "AGENTMESH_MODEL": "m"}
    with pytest.raises(ValueError, match=rf"agentmesh-agents\[{extra}\]"):
        make_backend(backend, env)
