"""The keys of a `type = "vhostuser"` port: parsing and validation.

config.parse_port() hands a vhostuser port's table here for the keys only
that type has (`socket`, `socket_mode`); everything else (queues, mode,
vlan, vlans, offload, guards, ACLs...) is parsed as for any port.  What
comes back is a frozen `VhostConfig`, the port's `vhost` field.

Nothing here touches the system: whether the socket's directory exists is
checked when the port is opened (vswitchd/ports/vhostuser.py), with an
error naming the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vswitchd.config_values import err, get_key, one_of, show

VHOST_KEYS = ("socket", "socket_mode")
SOCKET_MODES = ("server", "client")
# sun_path holds 108 bytes with its terminating NUL.
_SUN_PATH_MAX = 107


@dataclass(frozen=True)
class VhostConfig:
    socket: str
    socket_mode: str = "server"     # "server": we listen; "client": we connect

    def to_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "socket_mode": self.socket_mode}


def _socket_path(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise err(key, f"{show(value)} is not an absolute path")
    if len(value.encode()) > _SUN_PATH_MAX or "\0" in value:
        raise err(key, f"{show(value)} is longer than a unix socket path may be "
                  f"({_SUN_PATH_MAX} bytes)")
    return value


def parse(t: dict[str, Any], base: str, type_: str) -> VhostConfig | None:
    """The vhost keys of port table `t` at `base`; None for other types,
    which may not have them."""
    if type_ != "vhostuser":
        for key in VHOST_KEYS:
            if key in t:
                raise err(f"{base}.{key}", f'not allowed for type "{type_}" '
                          '(only for type "vhostuser")')
        return None
    if "socket" not in t:
        raise err(f"{base}.socket", "required key is missing (the vhost-user unix socket path)")
    return VhostConfig(
        socket=get_key(t, base, "socket", "", _socket_path),
        socket_mode=get_key(t, base, "socket_mode", "server", one_of(SOCKET_MODES)),
    )
