"""A TCP proxy on loopback whose connections a test can cut, as a network would."""

from __future__ import annotations

import socket
import threading


class Proxy:
    """Forwards each connection to its port to `target` (host:port, settable after start);
    `cut()` ends every connection open now, both ways, and new ones are forwarded again."""

    def __init__(self, target: str = "") -> None:
        self.target = target
        self.connections = 0
        """Connections forwarded so far."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            host, _, port = self.target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except (OSError, ValueError):
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._end(source, sink)

    def _end(self, *sockets: socket.socket) -> None:
        for one in sockets:
            with self._lock:
                self._open.discard(one)
            try:
                one.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            one.close()

    def cut(self) -> None:
        """End every connection open now."""
        with self._lock:
            sockets = list(self._open)
        self._end(*sockets)

    def close(self) -> None:
        self._listener.close()
        self.cut()
