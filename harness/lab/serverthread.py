"""Run a pyftpdlib IOLoop in a background thread: ready signal, captured errors, fast stop.

pyftpdlib's ``serve_forever`` blocks in ``poll()`` until a socket or a timer fires, so a
stop request from another thread would wait for the next event (pytest-localftpserver
sleeps a whole second per teardown because of that). Here a socketpair "waker" is
registered in the loop: writing one byte makes the loop run queued callbacks at once,
including the one that closes every dispatcher, which ends the loop.

pyftpdlib also swallows handler exceptions into the ``pyftpdlib`` logger. One logging
handler, keyed by thread id, routes ERROR records of each loop thread to that loop's
``errors`` list, so a test can assert that its server saw nothing unexpected.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from pyftpdlib.ioloop import IOLoop

T = TypeVar("T")


class LabStartError(RuntimeError):
    """The server could not be started or did not greet a test client."""


class LabServerError(RuntimeError):
    """Exceptions happened inside the server thread while it ran."""


class LabIOLoop(IOLoop):  # type: ignore[misc,valid-type]
    """pyftpdlib's platform loop, as a private class.

    ``IOLoop.close()`` resets ``cls._instance``; on a subclass that leaves the global
    ``IOLoop.instance()`` (which someone else may be using) alone.
    """


class _ThreadErrorCapture(logging.Handler):
    """Hands ERROR records logged by a registered thread to that thread's sink."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self._sinks: dict[int, Callable[[str], None]] = {}
        self._guard = threading.Lock()

    def register(self, ident: int, sink: Callable[[str], None]) -> None:
        with self._guard:
            self._sinks[ident] = sink

    def unregister(self, ident: int) -> None:
        with self._guard:
            self._sinks.pop(ident, None)

    def emit(self, record: logging.LogRecord) -> None:
        sink = self._sinks.get(threading.get_ident())
        if sink is None:
            return
        try:
            sink(self.format(record))
        except Exception:  # a broken sink must never break the server
            self.handleError(record)


_CAPTURE = _ThreadErrorCapture()
_CAPTURE_LOCK = threading.Lock()


def _install_capture() -> None:
    log = logging.getLogger("pyftpdlib")
    with _CAPTURE_LOCK:
        if _CAPTURE not in log.handlers:
            log.addHandler(_CAPTURE)


class _Waker:
    """A socketpair registered in the loop: a byte written from any thread wakes it."""

    def __init__(self, ioloop: LabIOLoop, on_wake: Callable[[], None]) -> None:
        self.ioloop = ioloop
        self._on_wake = on_wake
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._fileno = self._reader.fileno()
        self.closed = False
        ioloop.register(self._fileno, self, ioloop.READ)

    # The dispatcher protocol the pyftpdlib pollers call into.
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._reader.recv(4096):
                pass
        self._on_wake()

    def handle_write_event(self) -> None:
        pass

    def handle_expt_event(self) -> None:
        pass

    def handle_close(self) -> None:
        self.close()

    def handle_error(self) -> None:
        logging.getLogger("pyftpdlib").error(
            "error in the lab loop waker:\n%s", traceback.format_exc()
        )

    def wake(self) -> None:
        # A full buffer already guarantees a wake-up; a closed one means the loop is gone.
        with contextlib.suppress(BlockingIOError, OSError):
            self._writer.send(b"\0")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.ioloop.unregister(self._fileno)
        self._reader.close()
        self._writer.close()


class IOLoopThread:
    """One private pyftpdlib IOLoop and the daemon thread that runs it.

    Register dispatchers (e.g. an ``FTPServer(..., ioloop=thread.ioloop)``) before
    :meth:`start`; afterwards touch the loop only through :meth:`call_soon`/:meth:`call`.
    """

    def __init__(self, name: str, errors: list[str] | None = None) -> None:
        self.name = name
        self.ioloop = LabIOLoop()
        self.errors: list[str] = errors if errors is not None else []
        self._pending: deque[Callable[[], None]] = deque()
        self._waker = _Waker(self.ioloop, self._run_pending)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def record_error(self, text: str) -> None:
        self.errors.append(text)

    def start(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            raise LabStartError(f"{self.name}: loop thread already started")
        _install_capture()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise LabStartError(f"{self.name}: loop thread did not start within {timeout} s")

    def _run(self) -> None:
        ident = threading.get_ident()
        _CAPTURE.register(ident, self.record_error)
        self._ready.set()
        loop = self.ioloop
        try:
            socket_map, poll, sched_poll = loop.socket_map, loop.poll, loop.sched.poll
            soonest: float | None = None
            while socket_map:
                poll(soonest)
                soonest = sched_poll()
        except BaseException as exc:
            self.record_error(f"loop crashed: {type(exc).__name__}: {exc}\n{_format(exc)}")
        finally:
            try:
                if loop.socket_map:
                    self._close_all()
            finally:
                _CAPTURE.unregister(ident)

    def _run_pending(self) -> None:
        while self._pending:
            callback = self._pending.popleft()
            try:
                callback()
            except Exception as exc:
                self.record_error(f"callback failed: {type(exc).__name__}: {exc}\n{_format(exc)}")

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop thread as soon as possible (thread-safe)."""
        self._pending.append(callback)
        self._waker.wake()

    def call(self, function: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``function`` in the loop thread, wait for it and return its result."""
        if not self.running:
            raise LabServerError(f"{self.name}: loop is not running")
        if threading.current_thread() is self._thread:
            return function()
        future: Future[T] = Future()

        def runner() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self.call_soon(runner)
        return future.result(timeout)

    def _close_all(self) -> None:
        """Close every dispatcher at once; an empty socket map ends the loop."""
        for dispatcher in list(self.ioloop.socket_map.values()):
            if hasattr(dispatcher, "_ssl_requested"):
                # Skip the close_notify exchange of pyftpdlib's TLS mixin: it may wait
                # for the peer and leave the socket open after the loop has gone.
                dispatcher._error = True
        self.ioloop.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Close all connections and end the thread; safe to call more than once."""
        thread = self._thread
        if thread is None:
            if not self._stopping:
                self._stopping = True
                self._waker.close()
                self.ioloop.close()
            return
        if threading.current_thread() is thread:
            raise LabServerError(f"{self.name}: stop() called from inside the loop thread")
        if thread.is_alive() and not self._stopping:
            self._stopping = True
            self.call_soon(self._close_all)
        deadline = time.monotonic() + timeout
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self.record_error(f"{self.name}: loop thread still alive {timeout} s after stop()")
        self._stopping = True

    def raise_errors(self) -> None:
        """Re-raise, in the caller's thread, what went wrong inside the loop."""
        if self.errors:
            raise LabServerError(f"{self.name}: " + "\n".join(self.errors))


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
