"""The ports file: written whole (a temporary file, then a rename), read back as written."""

from __future__ import annotations

import json
from pathlib import Path

from agentmesh.server import ports


def test_the_addresses_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "run" / "scheduler.json"  # a folder that does not exist yet
    assert ports.read(path) is None
    ports.write(path, ports.Bound("127.0.0.1:41234", "127.0.0.1:41235", 4242))
    assert json.loads(path.read_text()) == {
        "grpc": "127.0.0.1:41234",
        "metrics": "127.0.0.1:41235",
        "pid": 4242,
    }
    assert ports.read(path) == ports.Bound("127.0.0.1:41234", "127.0.0.1:41235", 4242)
    assert [p.name for p in path.parent.iterdir()] == ["scheduler.json"]  # no temporary left


def test_no_metrics_address_when_metrics_are_off(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    ports.write(path, ports.Bound("127.0.0.1:41234", "", 7))
    assert json.loads(path.read_text()) == {"grpc": "127.0.0.1:41234", "pid": 7}
    assert ports.read(path) == ports.Bound("127.0.0.1:41234", "", 7)


def test_a_rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    ports.write(path, ports.Bound("127.0.0.1:1111", "127.0.0.1:2222", 1))
    before = path.stat().st_ino
    ports.write(path, ports.Bound("127.0.0.1:3333", "", 2))
    assert ports.read(path) == ports.Bound("127.0.0.1:3333", "", 2)
    assert path.stat().st_ino != before  # renamed over, never written in place


def test_bound_keeps_the_host_and_puts_the_port_got() -> None:
    assert ports.bound("127.0.0.1:0", 41234) == "127.0.0.1:41234"
    assert ports.bound("[::1]:0", 41234) == "[::1]:41234"


def test_http_ok_is_true_for_200_only() -> None:
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert ports.http_ok(f"{base}/health")
        assert not ports.http_ok(f"{base}/loading")
    finally:
        server.shutdown()
        server.server_close()
    assert not ports.http_ok(f"{base}/health", timeout=0.5)  # nobody listens any more
