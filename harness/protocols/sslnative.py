"""The three OpenSSL settings the ``ssl`` module cannot make, made through ctypes.

Python 3.10-3.14 can set TLS 1.2 cipher suites (``set_ciphers``) and version bounds, but
not TLS 1.3 cipher suites, signature algorithms or groups: those stay whatever the local
OpenSSL build and its ``openssl.cnf`` say. :mod:`harness.protocols.tlspolicy` wants them
pinned, so this module calls ``SSL_CTX_set_ciphersuites``, ``SSL_CTX_set1_sigalgs_list``
and ``SSL_CTX_set1_groups_list`` on the ``SSL_CTX`` behind an :class:`ssl.SSLContext`.

How, and why it cannot crash the interpreter:

* The functions are looked up through ``ctypes.CDLL(ssl._ssl.__file__)``: ``dlsym`` on
  that handle searches ``_ssl`` and its own dependencies, so it is the very libssl that
  ``_ssl`` uses (a second OpenSSL in the process, such as the one inside
  ``cryptography``, is never touched). ``OpenSSL_version_num`` from that handle must
  equal ``ssl.OPENSSL_VERSION_NUMBER``.
* CPython's ``PySSLContext`` is ``PyObject_HEAD`` followed by ``SSL_CTX *ctx`` in every
  release that has ``TLSVersion`` (3.7 to 3.14). Before the pointer is used, two
  facts are checked: the word before it is the object's type pointer (so the header is
  where ``object.__basicsize__`` says it ends, debug and free-threaded builds included),
  and ``SSL_CTX_get_options`` on the pointer follows ``context.options`` while a bit is
  flipped through the ``ssl`` API and back. Only then is anything written.
* Each setter's return value is checked (OpenSSL returns 0 for a name it does not know
  and leaves the context unchanged), the OpenSSL error queue is cleared after a refusal
  so ``_ssl`` never reads a stale error, and the TLS 1.3 suites are read back through
  ``SSLContext.get_ciphers()``.

When any of this is impossible (not CPython, ``_ssl`` linked statically without exported
symbols, a layout that fails the checks, OpenSSL older than 1.1.1) every function raises
:class:`NativeTLSUnavailable` with the reason, before touching memory; callers fall back
to what the ``ssl`` module can set. :func:`unavailable_reason` says which case applies.
"""

from __future__ import annotations

import ctypes
import functools
import ssl
import sys
from dataclasses import dataclass

__all__ = [
    "NativeTLSUnavailable",
    "set_groups",
    "set_sigalgs",
    "set_tls13_ciphersuites",
    "unavailable_reason",
]

# From <openssl/ssl.h> (unchanged since OpenSSL 1.1.1): the SSL_CTX_set1_*_list macros.
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SIGALGS_LIST = 98
# Flipped and restored to prove the SSL_CTX pointer: meaningless for clients, and only
# the server's own preference for servers; it is put back before anything else happens.
_PROOF_OPTION = ssl.OP_CIPHER_SERVER_PREFERENCE
_OPTIONS_MASK = (1 << 64) - 1


class NativeTLSUnavailable(RuntimeError):
    """The ``SSL_CTX`` behind this interpreter's ``SSLContext`` cannot be reached safely."""


@dataclass(frozen=True)
class _LibSSL:
    """Typed entry points of the libssl that ``_ssl`` is linked against."""

    set_ciphersuites: ctypes._CFuncPtr
    ctx_ctrl: ctypes._CFuncPtr
    get_options: ctypes._CFuncPtr
    clear_errors: ctypes._CFuncPtr
    ctx_offset: int


def _load() -> _LibSSL:
    if sys.implementation.name != "cpython":
        raise NativeTLSUnavailable(f"{sys.implementation.name} is not CPython")
    if ssl.OPENSSL_VERSION_INFO < (1, 1, 1):
        raise NativeTLSUnavailable(f"{ssl.OPENSSL_VERSION} predates TLS 1.3 settings")
    module_file = getattr(ssl._ssl, "__file__", None)  # type: ignore[attr-defined]
    try:
        library = ctypes.CDLL(module_file)  # None: the interpreter itself (static _ssl)
        set_ciphersuites = library.SSL_CTX_set_ciphersuites
        ctx_ctrl = library.SSL_CTX_ctrl
        get_options = library.SSL_CTX_get_options
        clear_errors = library.ERR_clear_error
        version_num = library.OpenSSL_version_num
    except (OSError, AttributeError) as exc:
        raise NativeTLSUnavailable(f"libssl symbols not reachable from _ssl: {exc}") from exc
    version_num.restype = ctypes.c_ulong
    version_num.argtypes = []
    if version_num() != ssl.OPENSSL_VERSION_NUMBER:
        raise NativeTLSUnavailable(
            f"the libssl found (0x{version_num():x}) is not the one _ssl reports "
            f"(0x{ssl.OPENSSL_VERSION_NUMBER:x})")
    set_ciphersuites.restype = ctypes.c_int
    set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ctx_ctrl.restype = ctypes.c_long
    ctx_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    # uint64_t since OpenSSL 3.0, unsigned long in 1.1.1.
    get_options.restype = (ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO >= (3,)
                           else ctypes.c_ulong)
    get_options.argtypes = [ctypes.c_void_p]
    clear_errors.restype = None
    clear_errors.argtypes = []
    libssl = _LibSSL(set_ciphersuites, ctx_ctrl, get_options, clear_errors,
                     ctx_offset=object.__basicsize__)
    _ssl_ctx(libssl, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # prove the layout once
    return libssl


@functools.cache
def _libssl() -> _LibSSL | str:
    """The bound library, or the reason it cannot be used (decided once per process)."""
    try:
        return _load()
    except NativeTLSUnavailable as exc:
        return str(exc)


def unavailable_reason() -> str | None:
    """None when the native settings work here, else why they do not."""
    found = _libssl()
    return found if isinstance(found, str) else None


def _bound() -> _LibSSL:
    found = _libssl()
    if isinstance(found, str):
        raise NativeTLSUnavailable(found)
    return found


def _ssl_ctx(libssl: _LibSSL, context: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of ``context``, after proving it is what ``_ssl`` itself uses."""
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"expected ssl.SSLContext, got {type(context).__name__}")
    word = ctypes.sizeof(ctypes.c_void_p)
    base = id(context) + libssl.ctx_offset
    if libssl.ctx_offset % word or ctypes.c_void_p.from_address(base - word).value != id(
            type(context)):
        raise NativeTLSUnavailable("SSLContext does not start with the expected object header")
    pointer = ctypes.c_void_p.from_address(base).value
    if not pointer:
        raise NativeTLSUnavailable("SSLContext holds no SSL_CTX")
    original = context.options
    try:
        for options in (original ^ _PROOF_OPTION, original):
            context.options = options
            if libssl.get_options(pointer) & _OPTIONS_MASK != int(context.options) & _OPTIONS_MASK:
                raise NativeTLSUnavailable("the SSL_CTX found does not follow SSLContext.options")
    finally:
        context.options = original
    return pointer


def _refused(libssl: _LibSSL, what: str, value: str) -> ValueError:
    libssl.clear_errors()  # leave no error behind for _ssl to misreport later
    return ValueError(f"OpenSSL refused {what} {value!r}")


def set_tls13_ciphersuites(context: ssl.SSLContext, suites: str) -> None:
    """Offer or accept only ``suites`` (``TLS_AES_256_GCM_SHA384:...``) under TLS 1.3.

    Postcondition, read back through ``get_ciphers()``: the TLS 1.3 suites are a
    non-empty part of ``suites`` in the same order (an OpenSSL in FIPS mode drops
    ChaCha20, which is fine; anything else is not).
    """
    libssl = _bound()
    if libssl.set_ciphersuites(_ssl_ctx(libssl, context), suites.encode("ascii")) != 1:
        raise _refused(libssl, "TLS 1.3 cipher suites", suites)
    wanted = suites.split(":")
    got = [c["name"] for c in context.get_ciphers() if c.get("protocol") == "TLSv1.3"]
    if not got or got != [name for name in wanted if name in got]:
        raise NativeTLSUnavailable(f"TLS 1.3 suites read back as {':'.join(got)!r}, "
                                   f"not {suites!r}")


def set_sigalgs(context: ssl.SSLContext, sigalgs: str) -> None:
    """Signature algorithms offered (client) or used and accepted (server), in order."""
    libssl = _bound()
    pointer = _ssl_ctx(libssl, context)
    if libssl.ctx_ctrl(pointer, _SSL_CTRL_SET_SIGALGS_LIST, 0, sigalgs.encode("ascii")) != 1:
        raise _refused(libssl, "signature algorithms", sigalgs)


def set_groups(context: ssl.SSLContext, groups: str) -> None:
    """Key-exchange groups (``X25519:P-256:...``) offered or accepted, in order."""
    libssl = _bound()
    pointer = _ssl_ctx(libssl, context)
    if libssl.ctx_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) != 1:
        raise _refused(libssl, "groups", groups)
