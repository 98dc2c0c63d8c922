"""Simulated port blocks (OP25B): ports that look filtered, refused or ICMP-prohibited.

Two ways, both real kernel behaviour rather than mocks:

* **Userspace, on loopback** (any user, Linux). ``refused``: a socket bound but not
  listening owns the port, so the kernel answers a SYN with RST (ECONNREFUSED), as it
  does for a firewall's ``REJECT --reject-with tcp-reset``. ``filtered``: a socket that
  listens with backlog 0 and whose accept queue is filled by one connection that is
  never accepted; Linux then drops every further SYN, so ``connect()`` hangs until the
  client gives up, exactly like a firewall's DROP. The queue length is read back with
  ``TCP_INFO`` (for a listener the kernel reports queue length and limit there), so
  filling does not depend on timing.
* **Network namespaces** (root, iproute2, iptables or nft): :class:`NetnsLab` joins a
  "client" and a "server" namespace with a veth pair and puts genuine firewall rules in
  the server namespace -- DROP (filtered), REJECT with tcp-reset (refused) and REJECT
  with icmp-admin-prohibited (unreachable). The addresses (TEST-NET-1, 192.0.2.0/30) exist
  only inside those namespaces, which have no other interface and no route out, so no
  packet can leave them.

:class:`Greeter` answers like a mail server's first line, so a probe has something
"open" to find next to the blocked port, in-process or inside the server namespace
(``python -m harness.lab.portblock greet ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ipaddress
import json
import os
import secrets
import selectors
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.lab.aioloop import LoopThread, StreamServer, abort_transport

MODES = ("filtered", "refused")
NETNS_SKIP_REASON = "needs root and iproute2/iptables"
DEFAULT_HOSTNAME = "mail.ftps-lab.test"
_MAX_FILLERS = 16

Address = tuple[str, int]


class PortBlockError(RuntimeError):
    """A block could not be set up (unsupported platform, queue would not fill)."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` and nothing more (connects to it get RST)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def accept_queue(listener: socket.socket) -> tuple[int, int]:
    """``(queued, limit)`` of a listening socket's accept queue, from Linux ``TCP_INFO``.

    For a listener, ``tcpi_unacked`` holds the current queue length and ``tcpi_sacked``
    the backlog; the kernel drops SYNs once ``queued > limit``.
    """
    if not hasattr(socket, "TCP_INFO"):
        raise PortBlockError("TCP_INFO is not available on this platform")
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    queued, limit = struct.unpack_from("II", info, 24)
    return queued, limit


class PortBlock:
    """Loopback ports that look ``filtered`` (SYN dropped) or ``refused`` (RST).

    ``addresses`` are ``(host, port)`` pairs (port 0: any free one) or already bound
    sockets, which the block then owns. Use as a context manager; :attr:`addresses`
    lists the real ports afterwards.
    """

    def __init__(
        self,
        mode: str = "filtered",
        addresses: Iterable[Address | socket.socket] = (("127.0.0.1", 0),),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown block mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self._wanted = list(addresses)
        self.sockets: list[socket.socket] = []
        self.fillers: list[socket.socket] = []
        self._addresses: list[Address] = []

    @property
    def addresses(self) -> list[Address]:
        """The real ``(host, port)`` pairs; still known after :meth:`close`."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The first (often only) blocked port."""
        return int(self.addresses[0][1])

    def start(self) -> PortBlock:
        if self.mode == "filtered" and sys.platform != "linux":
            raise PortBlockError("the userspace 'filtered' block needs Linux")
        try:
            for wanted in self._wanted:
                sock = wanted if isinstance(wanted, socket.socket) else bind_socket(*wanted)
                self.sockets.append(sock)
                self._addresses.append(sock.getsockname()[:2])
                if self.mode == "filtered":
                    sock.listen(0)
                    self._fill(sock)
        except BaseException:
            self.close()
            raise
        return self

    def _fill(self, listener: socket.socket) -> None:
        """Connect (and never accept) until the kernel reports the accept queue full."""
        host, port = listener.getsockname()[:2]
        for _ in range(_MAX_FILLERS):
            queued, limit = accept_queue(listener)
            if queued > limit:
                return
            filler = socket.socket(listener.family, socket.SOCK_STREAM)
            self.fillers.append(filler)
            filler.settimeout(1.0)
            filler.connect((host, port))
            deadline = time.monotonic() + 1.0
            while accept_queue(listener)[0] == queued:  # the final ACK is processed async
                if time.monotonic() > deadline:
                    raise PortBlockError(f"connection to {host}:{port} was not queued")
                time.sleep(0.001)
        raise PortBlockError(f"accept queue of {host}:{port} did not fill")

    def queue_lengths(self) -> list[int]:
        """Connections waiting in each accept queue (``filtered``): only the fillers'."""
        return [accept_queue(sock)[0] for sock in self.sockets]

    def close(self) -> None:
        for sock in (*self.fillers, *self.sockets):
            sock.close()
        self.fillers.clear()
        self.sockets.clear()

    def __enter__(self) -> PortBlock:
        if not self.sockets:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PortBlock({self.mode!r}, {self.addresses!r})"


# -- a stand-in for the server's greeting ---------------------------------------------


class Greeter:
    """Listeners that greet like a mail server (or stay silent) -- for probes, not mail.

    ``banner`` is sent on connect (``{host}`` is replaced by ``hostname``); ``None``
    accepts and says nothing. With ``tls`` the handshake comes first (the 465 role).
    After the greeting it answers EHLO with 250, QUIT with 221 and anything else 502.
    """

    def __init__(
        self,
        listeners: Iterable[Address | socket.socket] = (("127.0.0.1", 0),),
        *,
        banner: str | None = "220 {host} ESMTP lab greeter",
        hostname: str = DEFAULT_HOSTNAME,
        tls: ssl.SSLContext | None = None,
        idle_timeout: float = 10.0,
    ) -> None:
        self._wanted = list(listeners)
        self.banner = banner.format(host=hostname) if banner is not None else None
        self.hostname = hostname
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self._addresses: list[Address] = []
        self._loop = LoopThread("greeter")
        self._servers: list[StreamServer] = []

    @property
    def addresses(self) -> list[Address]:
        """The real ``(host, port)`` pairs; still known after :meth:`close`."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    @property
    def errors(self) -> list[str]:
        return self._loop.errors

    def start(self, timeout: float = 5.0) -> Greeter:
        try:
            for wanted in self._wanted:
                sock = wanted if isinstance(wanted, socket.socket) else bind_socket(*wanted)
                self.sockets.append(sock)
                self._addresses.append(sock.getsockname()[:2])
            self._loop.start()
            self._servers = self._loop.run(self._open(), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _open(self) -> list[StreamServer]:
        for sock in self.sockets:
            sock.listen(128)
        return [StreamServer(sock, self._handle, tls=self.tls).start() for sock in self.sockets]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.banner is not None:
                writer.write(self.banner.encode() + b"\r\n")
            while True:
                line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
                if not line:
                    break
                if self.banner is None:
                    continue
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    break
                if verb in (b"EHLO", b"HELO"):
                    writer.write(f"250 {self.hostname}\r\n".encode())
                else:
                    writer.write(b"502 5.5.1 only a greeter\r\n")
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                abort_transport(writer.transport)  # TLS-safe: see its docstring

    def stop(self, timeout: float = 1.0) -> None:
        self._loop.stop(self._close_all, timeout)
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    async def _close_all(self) -> None:
        for server in self._servers:
            await server.close()

    def __enter__(self) -> Greeter:
        if not self.sockets:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- network namespaces with a real firewall -----------------------------------------

BLOCK_ACTIONS = ("drop", "reject", "prohibit")
_IPTABLES_TARGET = {
    "drop": ["-j", "DROP"],
    "reject": ["-j", "REJECT", "--reject-with", "tcp-reset"],
    "prohibit": ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"],
}
_NFT_VERDICT = {
    "drop": ["drop"],
    "reject": ["reject", "with", "tcp", "reset"],
    "prohibit": ["reject", "with", "icmpx", "type", "admin-prohibited"],
}
_LIVE: set[NetnsLab] = set()


class NetnsError(RuntimeError):
    """A namespace command failed; the message carries the command and its stderr."""


def available_firewalls() -> list[str]:
    return [tool for tool in ("iptables", "nft") if shutil.which(tool)]


def netns_unavailable() -> str | None:
    """Why :class:`NetnsLab` cannot run here, or None when it can."""
    if sys.platform != "linux":
        return f"{NETNS_SKIP_REASON} (Linux only)"
    if os.geteuid() != 0:
        return f"{NETNS_SKIP_REASON} (not running as root)"
    if not shutil.which("ip"):
        return f"{NETNS_SKIP_REASON} (ip not found: Debian package iproute2)"
    if not available_firewalls():
        return f"{NETNS_SKIP_REASON} (neither iptables nor nft found: Debian package iptables)"
    return None


def _run(argv: Sequence[str], timeout: float = 10.0) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _project_env() -> dict[str, str]:
    """The environment for our own modules run in a namespace: harness importable."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class NetnsLab:
    """A client and a server namespace, a veth pair between them, a firewall on the server.

    Names are unique per instance; :meth:`close` (also run at exit) removes the
    namespaces, which takes the veth pair and every rule with them.
    """

    def __init__(
        self,
        *,
        client_address: str = "192.0.2.1",
        server_address: str = "192.0.2.2",
        prefix_length: int = 30,
        firewall: str | None = None,
    ) -> None:
        tag = f"pb{os.getpid() % 10000}{secrets.token_hex(2)}"
        self.client = f"{tag}-c"
        self.server = f"{tag}-s"
        self._veth = (f"{tag}c", f"{tag}s")
        self.client_address = client_address
        self.server_address = server_address
        self.prefix_length = prefix_length
        tools = available_firewalls()
        self.firewall = firewall or (tools[0] if tools else "iptables")
        if self.firewall not in ("iptables", "nft"):
            raise ValueError("firewall must be 'iptables' or 'nft'")
        self._created: list[str] = []
        self._greeter: subprocess.Popen[bytes] | None = None

    def start(self) -> NetnsLab:
        reason = netns_unavailable()
        if reason:
            raise NetnsError(reason)
        _LIVE.add(self)
        try:
            for namespace in (self.client, self.server):
                _run(["ip", "netns", "add", namespace])
                self._created.append(namespace)
                _run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            client_if, server_if = self._veth
            _run(["ip", "link", "add", client_if, "netns", self.client,
                  "type", "veth", "peer", "name", server_if, "netns", self.server])
            for namespace, name, address in (
                (self.client, client_if, self.client_address),
                (self.server, server_if, self.server_address),
            ):
                _run(["ip", "-n", namespace, "addr", "add",
                      f"{address}/{self.prefix_length}", "dev", name])
                _run(["ip", "-n", namespace, "link", "set", name, "up"])
            if self.firewall == "nft":
                self._server_exec(["nft", "add", "table", "inet", "portblock"])
                self._server_exec(["nft", "add", "chain", "inet", "portblock", "input",
                                   "{ type filter hook input priority 0 ; policy accept ; }"])
        except BaseException:
            self.close()
            raise
        return self

    def exec_argv(self, namespace: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def _server_exec(self, argv: Sequence[str]) -> str:
        return _run(self.exec_argv(self.server, argv))

    # -- firewall -----------------------------------------------------------------------

    def block(self, port: int, action: str) -> None:
        """Add a rule in the server namespace for TCP ``port``: drop, reject or prohibit."""
        if action not in BLOCK_ACTIONS:
            raise ValueError(f"unknown action {action!r}; use one of {', '.join(BLOCK_ACTIONS)}")
        if self.firewall == "nft":
            self._server_exec(["nft", "add", "rule", "inet", "portblock", "input",
                               "tcp", "dport", str(port), *_NFT_VERDICT[action]])
        else:
            self._server_exec(["iptables", "-w", "5", "-A", "INPUT", "-p", "tcp",
                               "--dport", str(port), *_IPTABLES_TARGET[action]])

    def unblock_all(self) -> None:
        if self.firewall == "nft":
            self._server_exec(["nft", "flush", "chain", "inet", "portblock", "input"])
        else:
            self._server_exec(["iptables", "-w", "5", "-F", "INPUT"])

    def rules(self) -> str:
        """The server namespace's rules as the tool prints them (for failure messages)."""
        if self.firewall == "nft":
            return self._server_exec(["nft", "list", "ruleset"])
        return self._server_exec(["iptables", "-w", "5", "-S", "INPUT"])

    # -- processes inside the namespaces --------------------------------------------------

    def greet(self, ports: Iterable[int], hostname: str = DEFAULT_HOSTNAME,
              timeout: float = 10.0) -> None:
        """Start a :class:`Greeter` in the server namespace on ``ports``; wait until ready."""
        if self._greeter is not None:
            raise NetnsError("a greeter already runs in this lab")
        port_list = ",".join(str(port) for port in ports)
        argv = self.exec_argv(self.server, [
            sys.executable, "-m", "harness.lab.portblock", "greet",
            "--host", self.server_address, "--ports", port_list, "--hostname", hostname,
        ])
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=_project_env())
        self._greeter = process
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = process.stdout.readline() if ready else b""
        if not line.startswith(b"READY"):
            self._stop_greeter()
            raise NetnsError(f"greeter did not start: {line!r}")

    def run(self, argv: Sequence[str], *, namespace: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a namespace (default: the client)."""
        return subprocess.run(
            self.exec_argv(namespace or self.client, argv), capture_output=True, text=True,
            timeout=timeout, env=_project_env(), check=False,
        )

    def probe(self, ports: str, timeout: float, *extra: str) -> dict[str, Any]:
        """``python -m harness.probe`` from the client namespace; its JSON output."""
        done = self.run(
            [sys.executable, "-m", "harness.probe", self.server_address, "--ports", ports,
             "--timeout", str(timeout), "--json", "--no-sessions", *extra],
            timeout=timeout * 3 + 20,
        )
        if done.returncode != 0:
            raise NetnsError(f"probe failed ({done.returncode}): {done.stderr.strip()}")
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    # -- cleanup ------------------------------------------------------------------------

    def _stop_greeter(self) -> None:
        process, self._greeter = self._greeter, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin:
                process.stdin.close()
        try:
            process.wait(2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(2.0)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()

    def close(self) -> None:
        """Stop processes and delete the namespaces; safe to call more than once."""
        self._stop_greeter()
        while self._created:
            namespace = self._created.pop()
            with contextlib.suppress(NetnsError):
                _run(["ip", "netns", "del", namespace])
        _LIVE.discard(self)

    def __enter__(self) -> NetnsLab:
        if not self._created:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@atexit.register
def _close_live_labs() -> None:
    for lab in list(_LIVE):
        lab.close()


# -- ``python -m harness.lab.portblock greet`` ----------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run a greeter until standard input closes (how :class:`NetnsLab` controls it)."""
    parser = argparse.ArgumentParser(prog="python -m harness.lab.portblock")
    commands = parser.add_subparsers(dest="command", required=True)
    greet = commands.add_parser("greet", help="greet like a mail server on some ports")
    greet.add_argument("--host", default="127.0.0.1")
    greet.add_argument("--ports", required=True, help="comma-separated, e.g. 25,587")
    greet.add_argument("--hostname", default=DEFAULT_HOSTNAME)
    args = parser.parse_args(argv)
    ports = [int(port) for port in args.ports.split(",") if port]
    greeter = Greeter([(args.host, port) for port in ports], hostname=args.hostname)
    greeter.start()
    try:
        print("READY " + ",".join(str(port) for _, port in greeter.addresses), flush=True)
        with contextlib.suppress(OSError, ValueError, KeyboardInterrupt):
            sys.stdin.buffer.read()
    finally:
        greeter.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
