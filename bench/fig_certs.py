"""Figure: a certificate set (CA + server leaf, as PEM) from harness.certs and from trustme.

Both sides make the same thing: a fresh CA, a leaf for ``localhost``, ``127.0.0.1`` and
``::1`` of the same key type, and the PEM bytes of the CA certificate, the leaf chain and
the leaf key (what a test writes to disk). RSA key generation searches for primes, so its
time varies a lot from key to key: each sample is the mean of a batch of sets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common import Context, Row, failure, interleave

FIGURE = "certs"
TITLE = "certificate set (CA + leaf)"
NAMES = ["localhost"]
IPS = ["127.0.0.1", "::1"]


def _ours(key_type: str) -> int:
    from harness.certs import CertificateAuthority  # imported by run() before any timing

    ca = CertificateAuthority.create(key_type)
    leaf = ca.issue_server(NAMES, IPS, key_type=key_type)
    return len(ca.cert_pem) + len(leaf.chain_pem) + len(leaf.key_pem)


def _trustme(key_type: str) -> int:
    import trustme  # imported by run() before any timing

    kind = trustme.KeyType.RSA if key_type.startswith("rsa") else trustme.KeyType.ECDSA
    ca = trustme.CA(key_type=kind)
    leaf = ca.issue_cert(*NAMES, *IPS, key_type=kind)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return len(ca.cert_pem.bytes()) + len(chain) + len(leaf.private_key_pem.bytes())


def _batch(make: Callable[[str], int], key_type: str, count: int) -> float:
    """Mean milliseconds per set over ``count`` sets."""
    start = time.perf_counter()
    for _ in range(count):
        make(key_type)
    return (time.perf_counter() - start) / count * 1000.0


def run(ctx: Context) -> list[Row]:
    import harness.certs  # noqa: F401  # imports are not what is measured

    rows: list[Row] = []
    for key_type, label, batch in (("ecdsa-p256", "ECDSA P-256", 50), ("rsa2048", "RSA-2048", 20)):
        count = 2 if ctx.quick else batch
        row = Row(
            figure=FIGURE,
            name=f"{TITLE}, {label}",
            ours_label="harness.certs",
            peer_label="trustme",
            unit="ms/set",
            better="lower",
            notes=[f"each sample: mean of {count} sets"],
        )
        rows.append(row)
        try:
            import trustme  # noqa: F401
        except ImportError:
            row.skip = "trustme is not installed (pip install trustme)"
            continue
        try:
            _ours(key_type), _trustme(key_type)  # first-call costs are not what is measured
            samples = interleave(
                {
                    "ours": lambda k=key_type, n=count: _batch(_ours, k, n),
                    "peer": lambda k=key_type, n=count: _batch(_trustme, k, n),
                },
                ctx.repeat,
                ctx.warmup,
            )
            row.ours, row.peer = samples["ours"], samples["peer"]
            row.notes.append(
                f"range over runs: ours {min(row.ours):.3g}-{max(row.ours):.3g}, trustme "
                f"{min(row.peer):.3g}-{max(row.peer):.3g} ms/set"
            )
        except Exception as exc:
            failure(row, exc)
    return rows
