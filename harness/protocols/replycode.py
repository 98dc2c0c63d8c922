"""What the first digit of an FTP or SMTP reply code means (RFC 959 4.2, RFC 5321 4.2.1).

Both protocols share the scheme, so both reply types take these properties from here.
"""

from __future__ import annotations


class ReplyCodeClass:
    """Mixin for a reply with an integer ``code``: its class by first digit."""

    code: int

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def intermediate(self) -> bool:
        return 300 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600
