"""User-facing errors.

Everything the daemon or vswitchctl reports to a person derives from
`VswitchError`; its str() is the whole message, one line, ready to print
after "vswitchd: " or to send back over the management socket.  Anything
that is not a `VswitchError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class VswitchError(Exception):
    """Base class for errors whose message is meant for the user."""

    def __str__(self) -> str:
        # A message that spans lines breaks log parsing and the one-reply-per-line
        # management protocol, so fold any stray newline into a space.
        return " ".join(super().__str__().split("\n"))


class ConfigError(VswitchError):
    """The configuration (file, `port add`/`port set` arguments) is invalid.

    The message reads `key.path: what is wrong; what is allowed`.  `key` holds
    the key path on its own (e.g. "ports.vm1.vlan") when there is one, so
    callers can point at the offending key without parsing the message.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
