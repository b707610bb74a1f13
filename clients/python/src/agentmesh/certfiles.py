"""Certificate files that change under a running process, and the channels that follow them.

cert-manager renews a certificate by rewriting its files (the CSI driver in place, a
projected Secret by swapping a symlink), long before it expires. `CertificateFiles`
notices by a stat of each file, reads them only then, and takes a new set only when the
certificate comes with its own key. Servers look on every handshake
(`agentmesh.server.tls.server_credentials`); `RenewingChannel` is how the owner of a
long-lived channel (the scheduler's to each worker, a worker's to the scheduler, the
asyncio client's; `RenewingBlockingChannel` for the blocking client) opens a new channel
after a renewal without cutting a call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from grpc import aio

from agentmesh.tls import TlsConfig, channel_options

log = logging.getLogger(__name__)


#: Seconds between two looks (a stat of each file) at a long-lived channel's certificate
#: files: how soon after a renewal its owner's next call goes over a channel opened with
#: the new certificate.
CHECK_PERIOD = 1.0

#: A file's version without reading it: device, inode, size, modification time (ns).
_FileStamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class Pem:
    """One identity's files, read together: the CA, the certificate chain and its key."""

    ca: bytes
    cert: bytes
    key: bytes


def check_pair(ca: str, cert: str, key: str) -> None:
    """Raise ValueError unless `cert` is a certificate, `key` is its private key and `ca`
    holds certificates: what a half-written renewal is not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # An encrypted key gets an empty password and fails, as grpc would fail it.
        context.load_cert_chain(cert, key, password=lambda: b"")
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ValueError(str(error)) from None


def _stamp(path: str) -> _FileStamp | None:
    try:
        stat = os.stat(path)  # through a symlink: a Secret volume swaps its target
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class CertificateFiles:
    """A TlsConfig's files as last read whole and sound, and their generation.

    `look()` stats the three files and reads them again only when one's device, inode,
    size or modification time differs from what it last saw: a rewrite in place
    (cert-manager's CSI driver) and a file swapped in (a Secret volume) alike. It takes
    the new files only when the certificate parses, the key is its own and nothing
    changed while it read them; otherwise the previous ones stay in use (said once in the
    log) until the files change again, as a renewal seen between writing the certificate
    and its key does. One instance may serve many users (a server's handshakes on grpc's
    threads, the scheduler's channel to each worker): each compares the generation it
    last used with the one `look()` gives.
    """

    def __init__(self, tls: TlsConfig, check: Callable[[str, str, str], None] = check_pair) -> None:
        """Reads the files now; `check` raises ValueError for a set that is not sound."""
        self.paths = (tls.ca, tls.cert, tls.key)
        self._check = check
        self._lock = threading.Lock()
        self._seen = self._stamps()
        self._current = self._read()
        self._generation = 0

    def _stamps(self) -> tuple[_FileStamp | None, ...]:
        return tuple(_stamp(path) for path in self.paths)

    def _read(self) -> Pem:
        ca, cert, key = (Path(path).read_bytes() for path in self.paths)
        return Pem(ca=ca, cert=cert, key=key)

    @property
    def current(self) -> tuple[int, Pem]:
        """The files in use and their generation, without a look: 0 for those read at
        start, one more at each renewal taken."""
        with self._lock:
            return self._generation, self._current

    def look(self) -> tuple[int, Pem]:
        """`current`, after a look at the files (a stat of each; a read if they changed)."""
        with self._lock:
            self._refresh()
            return self._generation, self._current

    def _refresh(self) -> None:
        stamps = self._stamps()
        if stamps == self._seen:
            return
        try:
            if None in stamps:
                raise ValueError("a file is missing")
            self._check(*self.paths)
            pem = self._read()
        except (ValueError, OSError) as error:
            if self._stamps() == stamps:  # settled, not a read racing a write
                self._seen = stamps
                log.warning(
                    "the certificate files changed to something that is not a "
                    "certificate with its key: the previous ones stay in use until "
                    "the files change again",
                    extra={"cert": self.paths[1], "key": self.paths[2], "error": str(error)},
                )
            return
        if self._stamps() != stamps:
            return  # written meanwhile: read again at the next look
        self._seen = stamps
        if pem != self._current:  # not touched only, nor rewritten the same
            self._current = pem
            self._generation += 1
            log.info("certificate files renewed", extra={"cert": self.paths[1]})


S = TypeVar("S")
C = TypeVar("C")  # aio.Channel or grpc.Channel


@dataclass(eq=False)
class _Opened(Generic[C, S]):
    """One channel a renewing channel opened, the stub on it, and how many calls hold it."""

    channel: C
    stub: S
    holders: int = 0
    retired: bool = False


class _Renewing(Generic[C, S]):
    """What the asyncio and the blocking renewing channels share: all but how a channel
    opens and closes."""

    def __init__(
        self,
        target: str,
        tls: TlsConfig | None,
        stub: Callable[[C], S],
        *,
        files: CertificateFiles | None = None,
        server_name: str = "",
        options: Sequence[tuple[str, Any]] = (),
        clock: Callable[[], float] = time.monotonic,
        period: float = CHECK_PERIOD,
    ) -> None:
        """`stub` makes the stub of each channel; `files` are `tls`'s, shared with other
        channels (default: read here); `server_name` is the name the peer's certificate
        must hold (default: the host of `target`)."""
        self.target = target
        on = tls is not None and tls.enabled
        if tls is not None and on and files is None:
            files = CertificateFiles(tls)
        self._files = files if on else None
        self._generation = 0
        self._server_name = (server_name or tls.server_name) if tls is not None else ""
        self._stub: Callable[[C], S] = stub
        self._options = list(options)
        self._clock = clock
        self._period = period
        self._next = clock() + period
        self._lock = threading.Lock()  # a blocking client's calls come from any thread
        self._retired: list[_Opened[C, S]] = []
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()  # asyncio channels being closed
        self._current: _Opened[C, S] = self._open(
            *self._files.current if self._files else (0, None)
        )

    def _connect(self, credentials: grpc.ChannelCredentials | None, options: list[Any]) -> C:
        """A new channel: plaintext without credentials."""
        raise NotImplementedError

    def _dispose(self, channel: C) -> None:
        """Close a channel no call holds any longer."""
        raise NotImplementedError

    def _open(self, generation: int, pem: Pem | None) -> _Opened[C, S]:
        """A channel with `pem` (None: plaintext), the files of `generation`."""
        self._generation = generation
        if pem is None:
            channel = self._connect(None, self._options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=pem.ca, private_key=pem.key, certificate_chain=pem.cert
            )
            channel = self._connect(credentials, channel_options(self._server_name, self._options))
        return _Opened(channel, self._stub(channel))

    @property
    def open_channels(self) -> int:
        """The channels open now: the current one and the retired ones still held."""
        return 1 + len(self._retired)

    def renew(self, force: bool = False) -> bool:
        """Open a new channel if the files changed to a sound new set; whether it did.
        Looks at the files at most once per period, unless `force`."""
        if self._files is None or self._closed:
            return False
        with self._lock:
            now = self._clock()
            if not force and now < self._next:
                return False
            self._next = now + self._period
            generation, pem = self._files.look()
            if generation == self._generation:
                return False
            old, self._current = self._current, self._open(generation, pem)
            old.retired = True
            self._retired.append(old)
            free = self._free(old)
        log.info(
            "certificate renewed: new calls go over a new channel",
            extra={"target": self.target, "held": old.holders},
        )
        if free:
            self._dispose(old.channel)
        return True

    def acquire(self) -> tuple[S, Callable[[], None]]:
        """The current stub (after a look at the files), and the function that lets go of
        its channel (once): for a call that outlives a block, as a stream does."""
        self.renew()
        with self._lock:
            opened = self._current
            opened.holders += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                opened.holders -= 1
                free = self._free(opened)
            if free:
                self._dispose(opened.channel)

        return opened.stub, release

    @contextmanager
    def hold(self) -> Iterator[S]:
        """The current stub, its channel kept open until the block ends, whatever renewal
        happens meanwhile."""
        stub, release = self.acquire()
        try:
            yield stub
        finally:
            release()

    def _free(self, opened: _Opened[C, S]) -> bool:
        """Whether `opened` is retired and free now (then no longer counted as open)."""
        if opened.retired and opened.holders == 0 and opened in self._retired:
            self._retired.remove(opened)
            return True
        return False

    def _all(self) -> list[C]:
        """Every channel still open, marking this closed."""
        with self._lock:
            self._closed = True
            opened, self._retired = [self._current, *self._retired], []
        return [one.channel for one in opened]


class RenewingChannel(_Renewing[aio.Channel, S]):
    """An asyncio channel to one target whose certificate follows this process's files.

    grpcio fixes a channel's credentials when it opens it, and the channel connects again
    (after a lost connection, an idle time) with them: one opened before a renewal
    presents the old certificate, expired in the end. `hold()` gives the stub of the
    channel opened with the current files, after a look at them (a stat, at most once per
    `period` seconds; `renew(force=True)` looks now, as after a failed call). When they
    changed, it opens a new channel and retires the old one, which stays open for the
    calls and streams that hold it, each to its end, and closes when the last lets go:
    no call is moved, cut or repeated. With TLS off it is one plaintext channel for ever.
    """

    def _connect(
        self, credentials: grpc.ChannelCredentials | None, options: list[Any]
    ) -> aio.Channel:
        if credentials is None:
            return aio.insecure_channel(self.target, options=options or None)
        return aio.secure_channel(self.target, credentials, options=options)

    def _dispose(self, channel: aio.Channel) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream's generator finalized off the loop: grpc reaps it
            return
        task = loop.create_task(channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel, ending the calls still on them."""
        for channel in self._all():
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class RenewingBlockingChannel(_Renewing[grpc.Channel, S]):
    """A RenewingChannel of blocking channels (`agentmesh.client.Client`); safe to use
    from several threads."""

    def _connect(
        self, credentials: grpc.ChannelCredentials | None, options: list[Any]
    ) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(self.target, options=options or None)
        return grpc.secure_channel(self.target, credentials, options=options)

    def _dispose(self, channel: grpc.Channel) -> None:
        channel.close()

    def close(self) -> None:
        """Close every channel, ending the calls still on them."""
        for channel in self._all():
            channel.close()
