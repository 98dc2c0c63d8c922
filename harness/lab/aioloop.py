"""An asyncio loop in a daemon thread, for lab helpers that must start and stop fast.

The NAT forwarder and the greeter both serve sockets from a background thread while
the test (or a blocking check) runs in the main thread. Stopping must not wait for
peers: the owner's cleanup aborts transports, which lets connection handlers finish on
their own; only tasks still running after a short grace are cancelled, and the thread
is joined with a bound.

Every abort of a connection goes through :func:`abort_transport`, which works around
an asyncio TLS bug of CPython 3.11.1-3.11.3 (see there); the mail lab uses it too.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# asyncio's TLS transport (the one StreamWriter.transport is on a TLS connection).
_TLS_TRANSPORT = asyncio.sslproto._SSLProtocolTransport


def abort_transport(transport: asyncio.BaseTransport | None) -> None:
    """``transport.abort()`` that survives CPython gh-98539 on a TLS transport.

    CPython PR 98540 (gh-98539, a reference-cycle fix; in 3.11.1 and 3.12.0a1) makes
    ``asyncio.sslproto._SSLProtocolTransport.close()`` set ``_ssl_protocol`` to None
    when the transport is already closed -- close() twice, close() after abort(), or
    close() after the peer hung up -- and ``abort()`` then dereferences it:
    ``AttributeError: 'NoneType' object has no attribute '_abort'``. aiosmtpd closes
    twice on every QUIT (``transport.close()``, then ``StreamWriter.close()``), and a
    stream handler closes its writer after the stop already aborted it, so a stop hits
    this all the time on 3.11.1-3.11.3 (Debian 12 ships 3.11.2). PR 104474 (3.11.4,
    3.12.0b1) made abort() a no-op in that state; this does the same on every version.
    Nothing is lost: the TCP transport under it is aborted on its own (see
    :func:`tcp_transport`).
    """
    if transport is None:
        return
    if isinstance(transport, _TLS_TRANSPORT) and transport._ssl_protocol is None:
        return  # closed twice already (gh-98539); abort() would raise on 3.11.1-3.11.3
    transport.abort()


def tcp_transport(transport: asyncio.BaseTransport) -> asyncio.BaseTransport:
    """The transport that owns the socket: under asyncio's TLS transport, its TCP one.

    Taken when the connection is made, because a TLS transport closed twice can no
    longer reach it (gh-98539, above), while its TLS shutdown may still hold the socket
    open for ``ssl_shutdown_timeout`` (30 s) waiting for the peer's close_notify.
    """
    ssl_protocol = getattr(transport, "_ssl_protocol", None)  # asyncio.sslproto internals
    inner = getattr(ssl_protocol, "_transport", None)
    return inner if isinstance(inner, asyncio.BaseTransport) else transport


class LoopThread:
    """One private event loop and the thread that runs it; errors are collected."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LoopThread:
        if self.loop is not None:
            raise RuntimeError(f"{self.name}: already started")
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_error)
        self.loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name=self.name,
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = context.get("message", "")
        self.errors.append(f"{text}: {type(exc).__name__}: {exc}" if exc else text)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        """Run ``coroutine`` in the loop and wait for its result."""
        if self.loop is None or not self.running:
            coroutine.close()
            raise RuntimeError(f"{self.name}: loop is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(
        self, cleanup: Callable[[], Awaitable[None]] | None = None, timeout: float = 1.0
    ) -> None:
        """Run ``cleanup``, cancel what is left, end the thread; safe to call twice."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive() and not loop.is_closed():
            try:
                self.run(self._shutdown(cleanup, timeout / 2), timeout)
            except Exception as exc:
                self.errors.append(f"stop: {type(exc).__name__}: {exc}")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            self.errors.append(f"{self.name}: thread still alive {timeout} s after stop()")
        self.loop = None
        self._thread = None

    @staticmethod
    async def _shutdown(cleanup: Callable[[], Awaitable[None]] | None, grace: float) -> None:
        if cleanup is not None:
            await cleanup()  # aborted transports end their handlers by themselves...
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:  # ...and only what still hangs is cancelled
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Protocol(asyncio.StreamReaderProtocol):
    """Remembers its transports, so a cancelled accept and a stop can still cut them."""

    transport: asyncio.BaseTransport | None = None
    tcp: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tcp = tcp_transport(transport)
        super().connection_made(transport)

    def abort(self) -> None:
        """Cut the connection: the TCP transport first, as it owns the socket."""
        abort_transport(self.tcp)
        abort_transport(self.transport)


class StreamServer:
    """An accept loop on a listening socket that hands each connection to ``handler``.

    Used instead of :func:`asyncio.start_server` because closing asyncio's ``Server``
    races with connections it has accepted but not yet wrapped: CPython 3.11 then
    fails an assertion inside the accept task, swallows it and leaks the socket, so a
    client hangs instead of seeing the close. Here every accepted socket is ours from
    the first moment, and :meth:`close` reaches all of them. Run it inside the loop.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 5.0,
    ) -> None:
        self.sock = sock
        self.handler = handler
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handshaking: dict[asyncio.Task[None], socket.socket] = {}
        self._connections: set[_Protocol] = set()

    def start(self) -> StreamServer:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())
        return self

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            task = loop.create_task(self._serve(conn))
            self._tasks.add(task)
            self._handshaking[task] = conn
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Report a handler's exception now, not when the task is garbage-collected."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            task.get_loop().call_exception_handler(
                {"message": "connection handler failed", "exception": task.exception(),
                 "task": task}
            )

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = _Protocol(reader)
        task = asyncio.current_task()
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.tls,
                ssl_handshake_timeout=self.handshake_timeout if self.tls else None,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            conn.close()
            return
        except asyncio.CancelledError:  # close() came during (or right after) the handshake
            protocol.abort()
            conn.close()
            raise
        finally:
            self._handshaking.pop(task, None)  # type: ignore[arg-type]
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._connections.add(protocol)
        try:
            await self.handler(reader, writer)
        finally:
            self._connections.discard(protocol)
            protocol.abort()  # the handler may have closed the writer: see abort_transport

    async def close(self) -> None:
        """Stop accepting and cut every connection; idempotent."""
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.wait([self._accepting])
            self._accepting = None
        self.sock.close()
        pending = dict(self._handshaking)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        for conn in pending.values():  # a task cancelled before it ran never closed it
            conn.close()
        for protocol in list(self._connections):
            protocol.abort()
