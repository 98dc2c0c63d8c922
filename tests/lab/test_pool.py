"""The lab pool: scenario lab entries become running, shared, stoppable targets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from harness.checks import run_check
from harness.lab.pool import LabPool, free_port_range
from harness.scenario import LabServer


@pytest.fixture()
def pool() -> Iterator[LabPool]:
    lab = LabPool()
    yield lab
    lab.close()


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def test_same_configuration_shares_one_server(pool: LabPool) -> None:
    first = pool.target_for(LabServer("a", "ftps", {"policy": "allow"}))
    again = pool.target_for(LabServer("a", "ftps", {"policy": "allow"}))
    other = pool.target_for(LabServer("b", "ftps", {"policy": "require"}))
    assert first.port == again.port != other.port
    assert (first.policy, other.policy) == ("allow", "require")


def test_lab_targets_are_loopback_with_secret_random_passwords(pool: LabPool) -> None:
    one = pool.target_for(LabServer("a", "ftps", {}))
    two = pool.target_for(LabServer("b", "smtp", {"role": "submission"}))
    assert one.host == two.host == "127.0.0.1"
    assert one.password and two.password and one.password != two.password
    assert one.password not in repr(one)


def test_close_stops_every_server(pool: LabPool) -> None:
    ports = [
        pool.target_for(LabServer("f", "ftps", {})).port,
        pool.target_for(LabServer("s", "smtp", {"role": "mta"})).port,
        pool.target_for(LabServer("n", "smtp-nat", {})).port,
    ]
    assert all(_listening(port) for port in ports)
    pool.close()
    assert not any(_listening(port) for port in ports)


def test_passive_port_count_becomes_a_free_range(pool: LabPool) -> None:
    target = pool.target_for(LabServer("p", "ftps", {"passive_ports": 5}))
    assert target.passive_ports is not None
    low, high = target.passive_ports
    assert high - low == 4 and low >= 1024
    result = run_check("pasv-address", target, {})
    assert result.status.value == "pass", result.describe()


def test_free_port_range_is_free_on_every_host() -> None:
    low, high = free_port_range(3, ("127.0.0.1", "127.0.0.2"))
    for port in range(low, high + 1):
        for host in ("127.0.0.1", "127.0.0.2"):
            with socket.socket() as sock:
                sock.bind((host, port))


def test_pin_trust_for_the_iis_certificate(pool: LabPool) -> None:
    target = pool.target_for(LabServer("iis", "ftps", {"certificate": "iis"}))
    assert target.trust.mode == "pin"
    assert run_check("certificate-trust", target, {}).status.value == "pass"


def test_unknown_fault_is_refused_by_name(pool: LabPool) -> None:
    with pytest.raises(ValueError, match=r"unknown FTPS lab fault.*wobble"):
        pool.target_for(LabServer("x", "ftps", {"faults": {"wobble": True}}))


@pytest.mark.parametrize(
    ("masquerade", "status"), [("external", "pass"), ("private", "fail"), ("none", "fail")]
)
def test_ftps_behind_nat_needs_the_external_address(
    pool: LabPool, masquerade: str, status: str
) -> None:
    server = LabServer(masquerade, "ftps-nat", {"masquerade": masquerade, "passive_ports": 2})
    target = pool.target_for(server)
    result = run_check("pasv-address", target, pool.params_for(server, "pasv-address", {}))
    assert result.status.value == status, result.describe()
    if masquerade == "private":
        assert "10.0.0.21" in result.observed


def test_op25b_network_injects_the_role_ports(pool: LabPool) -> None:
    server = LabServer("net", "op25b-network", {"port25": "refused"})
    pool.target_for(server)
    params = pool.params_for(server, "op25b-diagnose", {"expect_verdict": "port25-refused"})
    assert set(params["ports"]) == {"smtp", "submission", "submissions"}
    assert params["expect_verdict"] == "port25-refused"
