"""``lab certs``: make the lab's certificates, PFX files for IIS, and pins from a shell."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from harness.certs import (
    DEFAULT_LEAF_DAYS,
    PRIVATE_MODE,
    CertFiles,
    CertificateAuthority,
    KeyType,
    PfxProfile,
    ServerCertificate,
    atomic_write,
    lab_pki,
    load_certificates,
    self_signed_iis,
)
from harness.protocols.tls import sha256_fingerprint

DEFAULT_PASSWORD_ENV = "LAB_PFX_PASSWORD"


class KeyTypeParam(click.ParamType):
    """Key type through :meth:`KeyType.parse`, so aliases and the error text match the API."""

    name = "key-type"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(kind.value for kind in KeyType) + "]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> KeyType:
        try:
            return KeyType.parse(value)  # type: ignore[arg-type]
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _out_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("certs"),
        show_default=True,
        help="Directory to write into.",
    )(func)


def _pfx_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--password-env",
        default=DEFAULT_PASSWORD_ENV,
        show_default=True,
        metavar="NAME",
        help="Environment variable holding the PFX password. When it is unset a random "
        "password is generated and saved next to the PFX (mode 0600); it is never printed.",
    )(func)
    return click.option(
        "--pfx",
        "pfx",
        type=click.Choice([p.value for p in PfxProfile], case_sensitive=False),
        default=None,
        help="Also write a PKCS#12 file: modern (AES-256, PBKDF2/SHA-256) or legacy "
        "(3DES, SHA-1 MAC; Windows Server 2016 and older).",
    )(func)


def _stem(name: str) -> str:
    """A file-name-safe stem from a host name (``*.example.net`` -> ``wildcard.example.net``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("*", "wildcard")).strip(".") or "server"


def _show(files: CertFiles, fingerprint: str) -> None:
    click.echo(f"certificate  {files.cert}")
    click.echo(f"private key  {files.key}  (mode 0600)")
    if files.ca is not None and files.ca != files.cert:
        click.echo(f"trust (CA)   {files.ca}")
    if files.pfx is not None:
        click.echo(f"PKCS#12      {files.pfx}")
    click.echo(f"SHA-256      {fingerprint}")


def _write_pfx(
    leaf: ServerCertificate, files: CertFiles, profile: str, password_env: str
) -> CertFiles:
    """Write the PFX; the password comes from the environment or is generated into a file."""
    kind = PfxProfile.parse(profile)
    pfx = files.cert.with_suffix(".pfx")
    password = os.environ.get(password_env, "")
    if password:
        leaf.write_pfx(pfx, password, kind)
        click.echo(f"PFX password: taken from ${password_env}")
    else:
        password = secrets.token_urlsafe(18)
        secret_file = pfx.with_name(pfx.name + ".password")
        atomic_write(secret_file, password.encode() + b"\n", mode=PRIVATE_MODE)
        leaf.write_pfx(pfx, password, kind)
        click.echo(f"PFX password: ${password_env} is unset; generated one into {secret_file}")
        click.echo(f'  to reuse it: export {password_env}="$(cat {secret_file})"')
    click.echo(f"PFX profile:  {kind.value} ({kind.description})")
    return CertFiles(cert=files.cert, key=files.key, ca=files.ca, pfx=pfx)


def _load_or_create_ca(out: Path, key_type: KeyType = KeyType.ECDSA_P256) -> CertificateAuthority:
    cert, key = out / "ca.pem", out / "ca.key"
    if cert.exists() and key.exists():
        return CertificateAuthority.load(cert, key)
    ca = CertificateAuthority.create(key_type)
    ca.write(out, "ca")
    click.echo(f"created CA   {cert} (no CA in {out} yet)")
    return ca


@click.group(
    "certs",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  lab certs lab                              the embedded lab's set into ./certs
  lab certs ca                               a lab CA (certs/ca.pem, certs/ca.key)
  lab certs server --dns ftp.example.net --ip 192.0.2.10 --pfx legacy
  lab certs iis ftp.example.net --pfx modern
  lab certs fingerprint certs/iis.pem        the SHA-256 pin
""",
)
def certs() -> None:
    """Make lab certificates: a CA, server leaves, IIS-style self-signed, PFX files."""


@certs.command(
    "ca",
    epilog="""\b
Examples:
  lab certs ca
  lab certs ca --key-type rsa3072 --out /srv/lab-certs
""",
)
@click.option(
    "--key-type", type=KeyTypeParam(), default=KeyType.ECDSA_P256.value, show_default=True
)
@click.option(
    "--name", "common_name", default=None, help="Common name (default: ftps-lab CA <id>)."
)
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing CA (its leaves stop verifying).")
@_out_option
def ca_command(
    key_type: KeyType, common_name: str | None, days: int, force: bool, out: Path
) -> None:
    """Create the lab CA (ca.pem, ca.key) that `lab certs server` issues from."""
    if (out / "ca.pem").exists() and not force:
        raise click.ClickException(f"{out / 'ca.pem'} already exists; use --force to replace it")
    ca = CertificateAuthority.create(key_type, common_name=common_name, days=days)
    files = ca.write(out, "ca")
    _show(files, ca.fingerprint)


@certs.command(
    "server",
    epilog="""\b
Examples:
  lab certs server --dns ftp.example.net
  lab certs server --dns ftp.example.net --dns ftp --ip 192.0.2.10 \\
      --key-type rsa2048 --pfx legacy
""",
)
@click.option("--dns", "dns_names", multiple=True, metavar="NAME", help="DNS name (repeatable).")
@click.option("--ip", "ips", multiple=True, metavar="ADDR", help="IP address (repeatable).")
@click.option(
    "--key-type", type=KeyTypeParam(), default=KeyType.ECDSA_P256.value, show_default=True
)
@click.option("--days", type=click.IntRange(1, 398), default=DEFAULT_LEAF_DAYS, show_default=True)
@click.option("--name", "stem", default=None, help="File stem (default: the first name).")
@_pfx_options
@_out_option
def server_command(
    dns_names: tuple[str, ...],
    ips: tuple[str, ...],
    key_type: KeyType,
    days: int,
    stem: str | None,
    pfx: str | None,
    password_env: str,
    out: Path,
) -> None:
    """Issue a server certificate from the CA in --out (created when missing).

    The first --dns (or --ip) becomes the common name; all go into the SAN.
    """
    if not dns_names and not ips:
        raise click.UsageError("give at least one --dns or --ip")
    ca = _load_or_create_ca(out)
    try:
        leaf = ca.issue_server(list(dns_names), list(ips), key_type=key_type, days=days)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    files = leaf.write(out, stem or _stem((dns_names or ips)[0]), ca_file=out / "ca.pem")
    if pfx:
        files = _write_pfx(leaf, files, pfx, password_env)
    _show(files, leaf.fingerprint)


@certs.command(
    "iis",
    epilog="""\b
Examples:
  lab certs iis ftp.example.net
  lab certs iis WIN-BUILD42 --pfx legacy      import on Windows Server 2016
""",
)
@click.argument("hostname")
@click.option("--days", type=click.IntRange(1, 398), default=365, show_default=True)
@_pfx_options
@_out_option
def iis_command(hostname: str, days: int, pfx: str | None, password_env: str, out: Path) -> None:
    """A single self-signed RSA-2048 certificate, like IIS Manager's
    "Create Self-Signed Certificate": trust it by pinning its SHA-256 fingerprint."""
    leaf = self_signed_iis(hostname, days=days)
    files = leaf.write(out, _stem(hostname))
    if pfx:
        files = _write_pfx(leaf, files, pfx, password_env)
    _show(files, leaf.fingerprint)


@certs.command(
    "fingerprint",
    epilog="""\b
Examples:
  lab certs fingerprint certs/iis.pem
  lab certs fingerprint server.cer            DER works too
""",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def fingerprint_command(file: Path) -> None:
    """Print the SHA-256 fingerprint of each certificate in FILE (leaf first)."""
    try:
        found = load_certificates(file)
    except ValueError as exc:
        raise click.ClickException(f"{file}: not a PEM or DER certificate ({exc})") from exc
    for cert in found:
        der = cert.public_bytes(serialization.Encoding.DER)
        click.echo(f"{sha256_fingerprint(der)}  {cert.subject.rfc4514_string()}")


@certs.command(
    "lab",
    epilog="""\b
Examples:
  lab certs lab                   reuse ./certs when still valid, else regenerate
  lab certs lab --force --out /tmp/lab-certs
""",
)
@click.option("--force", is_flag=True, help="Regenerate even when the files are still valid.")
@_out_option
def lab_command(force: bool, out: Path) -> None:
    """Make (or reuse) the embedded lab's set: CA, loopback leaf, IIS-style, and the faults."""
    pki = lab_pki(out, regenerate=force)
    click.echo(f"{'generated' if pki.generated else 'reused'} lab certificates in {pki.directory}")
    click.echo(f"ca             {pki.ca_file}  {pki.ca.fingerprint}")
    for name in ("lab", "iis", "expired", "not-yet-valid", "wrong-host", "unknown-ca"):
        files = pki.files(name)
        click.echo(f"{name:<14} {files.cert}  {pki.fingerprint(name)}")
