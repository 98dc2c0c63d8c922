"""A TCP port-rewriting forwarder: the lab's stand-in for a NAT router's port forward.

Routers publish an inside service on another outside port, e.g. outside 587 onto an
MTA that only listens on 25. The forwarder listens on 127.0.0.1 port 0 (the outside
port) and relays each connection to ``target_host:target_port`` (the inside port),
byte for byte in both directions. Half-closes pass through (EOF on one side becomes
``shutdown(SHUT_WR)`` on the other), so protocols that signal the end of data by
closing one direction still work.

It relays one port and never looks inside the stream. That is exactly why FTPS behind
NAT needs help from the server: a router's FTP helper rewrites the address in a
plaintext ``227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`` reply, but inside TLS it
cannot read, let alone rewrite, the reply. The server itself must announce the outside
address (IIS "External IP address of Firewall", vsftpd ``pasv_address``, ProFTPD
``MasqueradeAddress``, pyftpdlib ``masquerade_address``) and the passive port range
must be forwarded too (one forwarder per data port, or a fixed range).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, replace

from harness.lab.aioloop import LoopThread, StreamServer


class ForwarderError(RuntimeError):
    """The forwarder could not start."""


@dataclass
class ForwarderStats:
    """Counters for tests and reports; ``bytes_in`` flows client -> inside."""

    accepted: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0  # the inside port refused or timed out, or the forwarder stopped first
    idle_timeouts: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str = ""


class _IdleTimeout(Exception):
    """Neither direction moved a byte for ``idle_timeout`` seconds."""


class PortForwarder:
    """Relay ``listen_host:listen_port`` (the outside) to ``target_host:target_port``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``connect_timeout``
    bounds the connect to the inside; ``idle_timeout`` closes a connection on which no
    byte moved in either direction for that long.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        buffer_size: int = 64 * 1024,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.buffer_size = buffer_size
        self.port = 0
        self._stats = ForwarderStats()
        self._loop = LoopThread(f"nat-{target_host}:{target_port}")
        self._server: StreamServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False

    @property
    def address(self) -> tuple[str, int]:
        """The outside address clients connect to."""
        return (self.listen_host, self.port)

    @property
    def errors(self) -> list[str]:
        return self._loop.errors

    def stats(self) -> ForwarderStats:
        """A snapshot of the counters."""
        return replace(self._stats)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> PortForwarder:
        try:
            sock = socket.create_server((self.listen_host, self.listen_port), backlog=128)
        except OSError as exc:
            raise ForwarderError(f"cannot listen on {self.listen_host}: {exc}") from exc
        self.port = sock.getsockname()[1]
        self._loop.start()
        try:
            self._server = self._loop.run(self._serve(sock), timeout)
        except BaseException:
            sock.close()
            self._loop.stop()
            raise
        return self

    async def _serve(self, sock: socket.socket) -> StreamServer:
        return StreamServer(sock, self._handle).start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop listening and cut every relayed connection at once."""
        self._loop.stop(self._close_all, timeout)
        self._server = None

    async def _close_all(self) -> None:
        self._closing = True  # a connect to the inside still in flight gives up after it
        if self._server is not None:
            await self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until every accepted connection has ended; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self._stats
            if stats.active == 0 and stats.completed + stats.failed == stats.accepted:
                return True
            time.sleep(0.01)
        return False

    def __enter__(self) -> PortForwarder:
        if self.port == 0:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PortForwarder({self.address!r} -> {self.target!r})"

    # -- relaying -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats = self._stats
        stats.accepted += 1
        stats.active += 1
        self._writers.add(writer)
        inside: asyncio.StreamWriter | None = None
        try:
            try:
                inside_reader, inside = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), self.connect_timeout
                )
            except (OSError, asyncio.TimeoutError) as exc:
                stats.failed += 1
                stats.last_error = f"connect {self.target[0]}:{self.target[1]}: " + (
                    f"no answer within {self.connect_timeout:g} s"
                    if isinstance(exc, asyncio.TimeoutError)
                    else f"{type(exc).__name__}: {exc}"
                )
                return
            if self._closing:
                stats.failed += 1
                stats.last_error = "forwarder stopped"
                return
            self._writers.add(inside)
            await self._relay(reader, writer, inside_reader, inside)
            stats.completed += 1
        finally:
            stats.active -= 1
            for end in (writer, inside):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()

    async def _relay(
        self,
        client_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        inside_reader: asyncio.StreamReader,
        inside: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        last = [loop.time()]
        up = asyncio.ensure_future(self._pipe(client_reader, inside, last, "bytes_in"))
        down = asyncio.ensure_future(self._pipe(inside_reader, client, last, "bytes_out"))
        _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
        if pending:  # one direction failed: the connection as a whole is over
            client.transport.abort()
            inside.transport.abort()
            await asyncio.wait(pending)
        else:  # both sides sent EOF: let the last bytes drain before closing
            await asyncio.gather(self._close(client), self._close(inside))
        errors = [task.exception() for task in (up, down)]
        idle = [exc for exc in errors if isinstance(exc, _IdleTimeout)]
        if idle:  # both directions notice the same silence; it is one timeout
            self._stats.idle_timeouts += 1
            self._stats.last_error = str(idle[0])
        for exc in errors:
            if exc is not None and not isinstance(exc, (_IdleTimeout, OSError)):
                raise exc

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), min(self.idle_timeout, 5.0))
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        last: list[float],
        counter: str,
    ) -> None:
        """Copy until EOF, then half-close the other side; bounded by the idle timeout."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = last[0] + self.idle_timeout - loop.time()
            if remaining <= 0:
                raise _IdleTimeout(f"no traffic for {self.idle_timeout:g} s")
            try:
                data = await asyncio.wait_for(reader.read(self.buffer_size), remaining)
            except asyncio.TimeoutError:
                continue  # the other direction may have moved; re-check the shared clock
            if not data:
                break
            last[0] = loop.time()
            setattr(self._stats, counter, getattr(self._stats, counter) + len(data))
            writer.write(data)
            try:
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
            except asyncio.TimeoutError:
                raise _IdleTimeout(f"peer did not read for {self.idle_timeout:g} s") from None
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
