"""What a client context really offers, read from the ClientHello it writes.

``SSLContext`` can list its cipher suites but cannot say which signature algorithms,
groups and versions it puts on the wire. This module runs a handshake against memory
buffers (nothing is sent anywhere), takes the first flight and parses it, so a policy
can be checked as the server will see it. Pure parsing; no pass/fail decisions.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from dataclasses import dataclass

__all__ = ["ClientHello", "ClientHelloError", "offered_by", "parse_client_hello"]

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01
_EXT_SUPPORTED_GROUPS = 10
_EXT_SIGNATURE_ALGORITHMS = 13
_EXT_SUPPORTED_VERSIONS = 43

# IANA code points, named the way OpenSSL lists and accepts them.
GROUP_NAMES: dict[int, str] = {
    0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001D: "X25519", 0x001E: "X448",
    0x0100: "ffdhe2048", 0x0101: "ffdhe3072", 0x0102: "ffdhe4096", 0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
}
SIGALG_NAMES: dict[int, str] = {
    0x0201: "rsa_pkcs1_sha1", 0x0202: "dsa_sha1", 0x0203: "ecdsa_sha1",
    0x0301: "rsa_pkcs1_sha224", 0x0302: "dsa_sha224", 0x0303: "ecdsa_sha224",
    0x0401: "rsa_pkcs1_sha256", 0x0402: "dsa_sha256", 0x0403: "ecdsa_secp256r1_sha256",
    0x0501: "rsa_pkcs1_sha384", 0x0502: "dsa_sha384", 0x0503: "ecdsa_secp384r1_sha384",
    0x0601: "rsa_pkcs1_sha512", 0x0602: "dsa_sha512", 0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256", 0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512", 0x0807: "ed25519", 0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256", 0x080A: "rsa_pss_pss_sha384", 0x080B: "rsa_pss_pss_sha512",
    0x081A: "ecdsa_brainpoolP256r1_sha256", 0x081B: "ecdsa_brainpoolP384r1_sha384",
    0x081C: "ecdsa_brainpoolP512r1_sha512",
}
VERSION_NAMES: dict[int, str] = {
    0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3",
}
_SCSV = {0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV", 0x5600: "TLS_FALLBACK_SCSV"}


class ClientHelloError(ValueError):
    """The bytes are not a complete TLS ClientHello."""


@dataclass(frozen=True)
class ClientHello:
    """The parts of a ClientHello a TLS policy decides, by name, in wire order."""

    legacy_version: str
    cipher_suites: tuple[str, ...]
    versions: tuple[str, ...]
    signature_algorithms: tuple[str, ...]
    groups: tuple[str, ...]


def _name(table: dict[int, str], code: int) -> str:
    return table.get(code, f"0x{code:04x}")


def _u16_list(data: bytes, length_size: int) -> list[int]:
    (count,) = struct.unpack("!B" if length_size == 1 else "!H", data[:length_size])
    body = data[length_size : length_size + count]
    if len(body) != count or count % 2:
        raise ClientHelloError("truncated list in an extension")
    return [code for (code,) in struct.iter_unpack("!H", body)]


def _handshake_message(flight: bytes) -> bytes:
    """Join the fragments of the first handshake message across TLS records."""
    message = b""
    offset = 0
    while offset + 5 <= len(flight):
        kind, _, length = struct.unpack("!BHH", flight[offset : offset + 5])
        if kind != _HANDSHAKE_RECORD:
            raise ClientHelloError(f"record type {kind}, not handshake")
        message += flight[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(message) >= 4 and len(message) >= 4 + int.from_bytes(message[1:4], "big"):
            return message[: 4 + int.from_bytes(message[1:4], "big")]
    raise ClientHelloError("the flight ends before the ClientHello does")


def parse_client_hello(flight: bytes, suite_names: dict[int, str] | None = None) -> ClientHello:
    """Parse the TLS records a client sent first; ``suite_names`` maps IANA codes to names."""
    message = _handshake_message(flight)
    if message[0] != _CLIENT_HELLO:
        raise ClientHelloError(f"handshake type {message[0]}, not ClientHello")
    body = message[4:]
    try:
        legacy_version = struct.unpack("!H", body[:2])[0]
        offset = 2 + 32
        offset += 1 + body[offset]  # session id
        suites = _u16_list(body[offset:], 2)
        offset += 2 + 2 * len(suites)
        offset += 1 + body[offset]  # compression methods
        extensions: dict[int, bytes] = {}
        if offset < len(body):
            (total,) = struct.unpack("!H", body[offset : offset + 2])
            offset += 2
            end = offset + total
            while offset + 4 <= end:
                kind, length = struct.unpack("!HH", body[offset : offset + 4])
                extensions[kind] = body[offset + 4 : offset + 4 + length]
                offset += 4 + length
    except (IndexError, struct.error) as exc:
        raise ClientHelloError(f"malformed ClientHello: {exc}") from exc
    names = {**_SCSV, **(suite_names or {})}
    versions = (_u16_list(extensions[_EXT_SUPPORTED_VERSIONS], 1)
                if _EXT_SUPPORTED_VERSIONS in extensions else [legacy_version])
    sigalgs = (_u16_list(extensions[_EXT_SIGNATURE_ALGORITHMS], 2)
               if _EXT_SIGNATURE_ALGORITHMS in extensions else [])
    groups = (_u16_list(extensions[_EXT_SUPPORTED_GROUPS], 2)
              if _EXT_SUPPORTED_GROUPS in extensions else [])
    return ClientHello(
        legacy_version=_name(VERSION_NAMES, legacy_version),
        cipher_suites=tuple(_name(names, code) for code in suites),
        versions=tuple(_name(VERSION_NAMES, code) for code in versions
                       if code & 0x0F0F != 0x0A0A),  # GREASE
        signature_algorithms=tuple(_name(SIGALG_NAMES, code) for code in sigalgs),
        groups=tuple(_name(GROUP_NAMES, code) for code in groups),
    )


def offered_by(context: ssl.SSLContext, server_name: str = "offer-check.invalid") -> ClientHello:
    """The ClientHello ``context`` would send, produced in memory and parsed.

    Raises ``ssl.SSLError`` when the context cannot produce one at all (for example
    ``NO_CIPHERS_AVAILABLE``): that is OpenSSL's own answer and is passed on unchanged.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for a ServerHello
        sslobj.do_handshake()
    suite_names = {entry["id"] & 0xFFFF: entry["name"] for entry in context.get_ciphers()}
    return parse_client_hello(outgoing.read(), suite_names)
