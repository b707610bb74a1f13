"""The CLI's TLS flags: half a TLS setting is a usage error, one line, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.cli import main


@pytest.mark.parametrize("command", ["workers", "skills", "plan", "submit", "top"])
def test_half_a_tls_setting_is_a_usage_error(
    command: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("AGENTMESH_TLS_CERT", "AGENTMESH_TLS_KEY", "AGENTMESH_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    ticket = tmp_path / "ticket.json"
    ticket.write_text('{"text": "hello"}')
    given = [str(ticket)] if command in ("submit", "plan") else []
    status = main([command, *given, "--tls-ca", __file__, "--target", "127.0.0.1:1"])
    said = capsys.readouterr().err
    assert status == 2, said
    assert said.startswith(f"agentmesh {command}: ") and said.count("\n") == 1
    assert "set AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY" in said


def test_a_missing_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTMESH_TLS_CERT", __file__)
    monkeypatch.setenv("AGENTMESH_TLS_KEY", __file__)
    status = main(["workers", "--tls-ca", str(tmp_path / "ca.pem")])
    assert status == 2
    assert f"AGENTMESH_TLS_CA={tmp_path / 'ca.pem'}: no such file" in capsys.readouterr().err
