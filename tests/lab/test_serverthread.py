"""The loop-thread helper: readiness, cross-thread calls, error capture and fast stop."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from harness.lab.serverthread import IOLoopThread, LabServerError


def test_call_runs_in_the_loop_thread_and_returns_or_raises() -> None:
    loop = IOLoopThread("test-loop")
    loop.start()
    try:
        assert loop.call(threading.current_thread) is loop.thread
        assert loop.call(lambda: 6 * 7) == 42
        with pytest.raises(ZeroDivisionError):
            loop.call(lambda: 1 / 0)
        assert loop.errors == []  # an exception handed back is not a server error
    finally:
        loop.stop()


def test_errors_logged_in_the_loop_thread_are_captured_and_others_are_not() -> None:
    log = logging.getLogger("pyftpdlib")
    loop = IOLoopThread("test-loop")
    loop.start()
    try:
        loop.call(lambda: log.error("broken inside the loop"))
        loop.call(lambda: log.warning("only a warning"))
        log.error("logged by the test thread, not the loop")
        assert len(loop.errors) == 1 and "broken inside the loop" in loop.errors[0]
        with pytest.raises(LabServerError, match="broken inside the loop"):
            loop.raise_errors()
    finally:
        loop.stop()


def test_failing_callbacks_are_recorded() -> None:
    loop = IOLoopThread("test-loop")
    loop.start()
    try:
        loop.call_soon(lambda: [][1])
        loop.call(lambda: None)  # runs after the failing callback
        assert any("IndexError" in error for error in loop.errors)
    finally:
        loop.stop()


def test_stop_is_immediate_and_idempotent() -> None:
    loop = IOLoopThread("test-loop")
    loop.start()
    thread = loop.thread
    assert thread is not None and thread.is_alive() and loop.running
    started = time.perf_counter()
    loop.stop()
    assert time.perf_counter() - started < 1.0
    assert not thread.is_alive()
    loop.stop()
    with pytest.raises(LabServerError, match="not running"):
        loop.call(lambda: None)
    assert loop.errors == []


def test_stop_without_start_releases_the_loop() -> None:
    loop = IOLoopThread("never-started")
    loop.stop()
    loop.stop()
    assert loop.ioloop.socket_map == {}
