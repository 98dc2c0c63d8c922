"""An asyncio loop in a daemon thread, for lab helpers that must start and stop fast.

The NAT forwarder and the greeter both serve sockets from a background thread while
the test (or a blocking check) runs in the main thread. Stopping must not wait for
peers: the owner's cleanup aborts transports, which lets connection handlers finish on
their own; only tasks still running after a short grace are cancelled, and the thread
is joined with a bound.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
    """Remembers its transport, so a cancelled accept can still close it."""

    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        super().connection_made(transport)


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
        self._writers: set[asyncio.StreamWriter] = set()

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
            task.add_done_callback(self._tasks.discard)

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
            if protocol.transport is not None:
                protocol.transport.abort()
            conn.close()
            raise
        finally:
            self._handshaking.pop(task, None)  # type: ignore[arg-type]
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._writers.add(writer)
        try:
            await self.handler(reader, writer)
        finally:
            self._writers.discard(writer)
            transport.abort()

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
        for writer in list(self._writers):
            writer.transport.abort()
