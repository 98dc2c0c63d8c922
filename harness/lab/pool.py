"""The embedded lab on demand: a scenario's ``lab:`` entries become running servers.

A :class:`LabPool` turns each :class:`~harness.scenario.LabServer` into a
:class:`~harness.targets.Target` on loopback, starting the servers the first time a
check needs them and sharing one running set between every scenario that asks for the
same configuration. Everything it starts it stops in :meth:`LabPool.close`.

Lab users get a random password per run (never a constant that could end up in a real
server's configuration); the password lives only in memory and in the ``Target``, whose
``repr`` hides it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from harness.certs import LabPKI, lab_pki
from harness.protocols.tls import Trust
from harness.results import CheckResult, Status
from harness.scenario import LabServer
from harness.targets import Target

LAB_USER = "labuser"
LAB_HOST = "127.0.0.1"
# The "inside" of a simulated NAT: another loopback address, so the outside ports
# (on 127.0.0.1) and the inside ports can be the same numbers, as on a real router.
NAT_INSIDE_HOST = "127.0.0.2"
# What a misconfigured server behind NAT announces in PASV: its private address. The
# harness only parses it; nothing ever connects there.
PRIVATE_ADDRESS = "10.0.0.21"
LAB_SERVER_NAME = "localhost"
LAB_TIMEOUT = 5.0
# Passive ranges come from below Linux's ephemeral range (32768-60999), so client
# sockets cannot take a port the range needs.
_PASSIVE_LOW, _PASSIVE_HIGH = 20000, 32000

# FTPS ``faults:`` switches a scenario may set, mapped onto the server configuration.
FTPS_FAULTS = {
    "legacy_tls_version",
    "session_resumption",
    "banner",
    "max_cons",
    "no_banner",
    "drop_control_during_transfer",
    "stall_data",
    "refuse_auth_tls",
    "cipher_mismatch",
}


@dataclass
class LabInstance:
    """The servers behind one lab target, and what checks need to know about them."""

    target: Target
    stoppers: list[Any] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # check -> params
    details: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        for part in reversed(self.stoppers):
            closer = getattr(part, "stop", None) or part.close
            with contextlib.suppress(Exception):
                closer()
        self.stoppers.clear()


class LabPool:
    """Start lab servers on demand, share them by configuration, stop them all at the end."""

    def __init__(self, pki: LabPKI | None = None, host: str = LAB_HOST) -> None:
        """``host`` is where ``ftps`` and ``smtp`` lab servers listen (NAT and OP25B
        simulations always stay on loopback addresses of their own)."""
        self._pki = pki
        self.host = host
        self._instances: dict[tuple[Any, ...], LabInstance] = {}
        self._lock = threading.Lock()

    @property
    def pki(self) -> LabPKI:
        if self._pki is None:
            self._pki = lab_pki()
        return self._pki

    def instance(self, server: LabServer) -> LabInstance:
        with self._lock:
            key = server.key()
            found = self._instances.get(key)
            if found is None:
                found = self._start(server)
                self._instances[key] = found
            return found

    def instances(self) -> list[LabInstance]:
        """The running instances, oldest first."""
        with self._lock:
            return list(self._instances.values())

    def target_for(self, server: LabServer) -> Target:
        return self.instance(server).target

    def params_for(self, server: LabServer, check: str, params: dict[str, Any]) -> dict[str, Any]:
        """The scenario's params plus what only the running lab knows (ports, mailbox)."""
        injected = self.instance(server).params.get(check, {})
        return {**injected, **params}

    def error_mark(self, server: LabServer) -> list[int]:
        """How many errors each part of ``server`` has recorded so far (see :meth:`verify`)."""
        return [len(_errors_of(part)) for part in self.instance(server).stoppers]

    def verify(
        self, server: LabServer, result: CheckResult, since: list[int] | None = None
    ) -> CheckResult:
        """Turn errors raised inside the lab's own server threads into an ``error`` result.

        Only errors recorded after ``since`` (an :meth:`error_mark` taken before the check)
        count: they happened while this check ran. A lab server that broke has not shown
        how the software it imitates behaves, so no verdict drawn from it stands, a pass
        least of all. The check's own status and summary stay in the evidence
        (``check_status``, ``check_summary``) next to the errors (``lab_server_errors``).
        An error recorded just after the check returned is counted for the next check on
        the same server: the threads do not say which session an error belongs to.
        """
        since = since or []
        errors: list[str] = []
        for index, part in enumerate(self.instance(server).stoppers):
            seen = since[index] if index < len(since) else 0
            errors.extend(str(e) for e in _errors_of(part)[seen:])
        if not errors:
            return result
        first = " ".join(errors[0].split())
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        result.evidence["lab_server_errors"] = errors[-5:]
        result.evidence["check_status"] = result.status.value
        result.evidence["check_summary"] = result.summary
        result.summary = (
            f"lab server error during the check: {first}{more}; "
            f"the check itself said {result.status.value}: {result.summary}"
        )
        result.status = Status.ERROR
        result.skip_kind = None
        result.advice = (
            "The embedded lab server failed while serving this check, so the verdict "
            "proves nothing; this is a bug in the lab, not in the server under test."
        )
        return result

    def close(self) -> None:
        with self._lock:
            for instance in self._instances.values():
                instance.stop()
            self._instances.clear()

    # -- building ------------------------------------------------------------------

    def _start(self, server: LabServer) -> LabInstance:
        builder = {
            "ftps": self._ftps,
            "ftps-nat": self._ftps_nat,
            "smtp": self._smtp,
            "smtp-nat": self._smtp_nat,
            "op25b-network": self._op25b,
        }[server.server]
        instance = LabInstance(
            target=Target(name=f"lab-{server.name}", protocol="", host="", port=0)
        )
        try:
            builder(server, instance)
        except BaseException:
            instance.stop()
            raise
        return instance

    def _trust(self, server: LabServer, certificate: str) -> Trust:
        mode = server.options.get("trust") or ("pin" if certificate == "iis" else "ca")
        if mode == "pin":
            return Trust(pin_sha256=self.pki.fingerprint(certificate))
        if mode == "insecure":
            return Trust(insecure=True)
        return Trust(ca_file=self.pki.ca_file)

    def _ftps_config(self, server: LabServer, host: str) -> Any:
        from harness.lab.ftps import FTPSServerConfig, FTPUser

        options = server.options
        certificate = options.get("certificate", "lab")
        files = self.pki.files(certificate)
        min_tls = str(options.get("min_tls", "1.2"))
        max_tls = options.get("max_tls")
        legacy = None
        if min_tls in ("1.0", "1.1"):  # a server that still speaks legacy TLS
            # max_tls "1.0"/"1.1" too: nothing newer, as old builds are.
            legacy, min_tls = min_tls, "1.2"
        password = secrets.token_urlsafe(12)
        config = FTPSServerConfig(
            certfile=files.cert,
            keyfile=files.key,
            policy=options.get("policy", "require"),
            require_session_reuse=bool(options.get("require_session_reuse", False)),
            implicit=bool(options.get("implicit", False)),
            users=[FTPUser(LAB_USER, password)],
            min_tls=min_tls,
            max_tls=str(max_tls) if max_tls else None,
            legacy_tls_version=legacy,
            host=host,
        )
        faults = dict(options.get("faults") or {})
        unknown = sorted(set(faults) - FTPS_FAULTS)
        if unknown:
            raise ValueError(
                f"unknown FTPS lab fault(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(FTPS_FAULTS))})"
            )
        return dataclasses.replace(config, **faults), certificate, password

    def _ftps_target(
        self,
        server: LabServer,
        config: Any,
        certificate: str,
        password: str,
        port: int,
        host: str = LAB_HOST,
    ) -> Target:
        reachable = reachable_address(host)
        return Target(
            name=f"lab-{server.name}",
            protocol=server.protocol,
            host=reachable,
            port=port,
            trust=self._trust(server, certificate),
            server_name=LAB_SERVER_NAME,
            user=LAB_USER,
            password=password,
            timeout=LAB_TIMEOUT,
            policy=config.policy,
            passive_address=reachable,
            passive_ports=config.passive_ports,
            session_reuse_required=config.require_session_reuse,
        )

    def _ftps(self, server: LabServer, instance: LabInstance) -> None:
        from harness.lab.ftps import FTPSLabServer

        config, certificate, password = self._ftps_config(server, self.host)
        count = server.options.get("passive_ports")
        if count:
            config.passive_ports = free_port_range(int(count), (self.host,))
        lab = FTPSLabServer(config).start()
        instance.stoppers.append(lab)
        instance.details["server"] = lab
        instance.target = self._ftps_target(
            server, config, certificate, password, lab.port, self.host
        )

    def _ftps_nat(self, server: LabServer, instance: LabInstance) -> None:
        """An FTPS server on the inside address, reached through a port-forwarding NAT.

        The forwarder relays the control port and every passive port from 127.0.0.1 (the
        router's outside) to 127.0.0.2 (the server). Like a real router, it cannot rewrite
        the PASV reply inside TLS, so only the server's masquerade address makes passive
        mode work: ``external`` (right), ``none`` (announces the inside address) or
        ``private`` (announces a 10.x address, the classic broken site).
        """
        from harness.lab.ftps import FTPSLabServer
        from harness.lab.nat import PortForwarder

        config, certificate, password = self._ftps_config(server, NAT_INSIDE_HOST)
        count = int(server.options.get("passive_ports", 4))
        low, high = free_port_range(count, (LAB_HOST, NAT_INSIDE_HOST))
        config.passive_ports = (low, high)
        masquerade = server.options.get("masquerade", "external")
        config.masquerade_address = {
            "external": LAB_HOST,
            "none": None,
            "private": PRIVATE_ADDRESS,
        }[masquerade]
        lab = FTPSLabServer(config).start()
        instance.stoppers.append(lab)
        control = PortForwarder(NAT_INSIDE_HOST, lab.port, listen_host=LAB_HOST).start()
        instance.stoppers.append(control)
        for port in range(low, high + 1):
            forwarder = PortForwarder(NAT_INSIDE_HOST, port, listen_host=LAB_HOST, listen_port=port)
            instance.stoppers.append(forwarder.start())
        instance.details.update(server=lab, inside=lab.address, outside=control.address)
        instance.target = self._ftps_target(server, config, certificate, password, control.port)

    def _mail_config(
        self, server: LabServer, role: str, password: str, host: str = LAB_HOST
    ) -> Any:
        from harness.lab.smtp import SMTPServerConfig

        options = server.options
        files = self.pki.files(options.get("certificate", "lab"))
        config = SMTPServerConfig(
            role=role,
            host=host,
            users={LAB_USER: password} if role != "mta" else {},
            cert_file=files.cert,
            key_file=files.key,
            tls_min_version=str(options.get("min_tls", "1.2")),
            tls_max_version=str(options["max_tls"]) if options.get("max_tls") else None,
        )
        faults = options.get("faults")
        return config.with_faults(dict(faults)) if faults else config

    def _mail_target(
        self,
        server: LabServer,
        protocol: str,
        port: int,
        password: str | None,
        host: str = LAB_HOST,
    ) -> Target:
        certificate = server.options.get("certificate", "lab")
        return Target(
            name=f"lab-{server.name}",
            protocol=protocol,
            host=reachable_address(host),
            port=port,
            trust=self._trust(server, certificate),
            server_name=LAB_SERVER_NAME,
            user=LAB_USER if password else None,
            password=password,
            timeout=LAB_TIMEOUT,
        )

    def _start_mail(self, instance: LabInstance, config: Any, mailbox: Any) -> Any:
        from harness.lab.smtp import SMTPLabServer

        lab = SMTPLabServer(config, mailbox).start()
        instance.stoppers.append(lab)
        return lab

    def _smtp(self, server: LabServer, instance: LabInstance) -> None:
        from harness.lab.mailbox import Mailbox

        role = server.options.get("role", "submission")
        password = secrets.token_urlsafe(12) if role != "mta" else None
        mailbox = Mailbox()
        config = self._mail_config(server, role, password or "", self.host)
        lab = self._start_mail(instance, config, mailbox)
        instance.details.update(server=lab, mailbox=mailbox)
        instance.params["submit-message"] = {"mailbox": mailbox}
        instance.target = self._mail_target(server, server.protocol, lab.port, password, self.host)

    def _smtp_nat(self, server: LabServer, instance: LabInstance) -> None:
        """The sendmail-box cure: the router maps an outside port (587) onto the MTA's 25.

        The target is the outside port, spoken to as what it really is, an MTA: mail
        for the lab's domain is accepted without AUTH, relaying is refused.
        """
        from harness.lab.mailbox import Mailbox
        from harness.lab.nat import PortForwarder

        mailbox = Mailbox()
        mta = self._start_mail(instance, self._mail_config(server, "mta", ""), mailbox)
        forwarder = PortForwarder(LAB_HOST, mta.port, listen_host=LAB_HOST).start()
        instance.stoppers.append(forwarder)
        instance.details.update(
            server=mta, mailbox=mailbox, inside=mta.address, outside=forwarder.address
        )
        instance.params["submit-message"] = {"mailbox": mailbox}
        instance.target = self._mail_target(server, "smtp", forwarder.port, None)

    def _op25b(self, server: LabServer, instance: LabInstance) -> None:
        """A simulated network: port 25 open, filtered or refused; 587 and 465 optional.

        Every role gets its own loopback port (the real 25/587/465 need root); the
        diagnosis check is told which port plays which role through ``params.ports``.
        """
        from harness.lab.mailbox import Mailbox
        from harness.lab.portblock import PortBlock

        options = server.options
        mailbox = Mailbox()
        password = secrets.token_urlsafe(12)
        ports: dict[str, int | None] = {"smtp": None, "submission": None, "submissions": None}
        port25 = options.get("port25", "filtered")
        if port25 == "open":
            ports["smtp"] = self._start_mail(
                instance, self._mail_config(server, "mta", ""), mailbox
            ).port
        else:
            block = PortBlock(port25).start()
            instance.stoppers.append(block)
            ports["smtp"] = block.port
        for role in ("submission", "submissions"):
            if options.get(role, role == "submission"):
                ports[role] = self._start_mail(
                    instance, self._mail_config(server, role, password), mailbox
                ).port
            else:
                # Nothing listens there: a closed port, as on a host without that service.
                ports[role] = closed_port()
        instance.params["op25b-diagnose"] = {"ports": ports, "timeout": 0.5}
        instance.params["submit-message"] = {"mailbox": mailbox}
        instance.details.update(mailbox=mailbox, ports=ports)
        protocol = "submission" if options.get("submission", True) else "submissions"
        port = ports[protocol] or ports["smtp"] or 0
        instance.target = self._mail_target(server, protocol, port, password)


def _errors_of(part: Any) -> list[Any]:
    """A lab part's recorded thread errors (servers, forwarders and blocks all keep some)."""
    return list(getattr(part, "errors", None) or [])


def reachable_address(host: str) -> str:
    """Where a client reaches a server listening on ``host`` (a wildcard: via loopback)."""
    return LAB_HOST if host in ("0.0.0.0", "::") else host


def closed_port(host: str = LAB_HOST) -> int:
    """A port number nothing listens on right now (the kernel answers RST)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_range(count: int, hosts: tuple[str, ...], attempts: int = 200) -> tuple[int, int]:
    """``count`` consecutive ports free on every host in ``hosts``, as ``(low, high)``.

    A lab server needs a real range for passive mode (a count in the scenario, so two
    parallel runs never fight over fixed numbers). Ports are test-bound and released;
    a lost race surfaces as the server's own clear "port in use" error.
    """
    rng = random.Random()
    for _ in range(attempts):
        low = rng.randrange(_PASSIVE_LOW, _PASSIVE_HIGH - count)
        if all(_port_free(host, port) for port in range(low, low + count) for host in hosts):
            return low, low + count - 1
    raise RuntimeError(f"no {count} consecutive free ports found in {attempts} attempts")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
