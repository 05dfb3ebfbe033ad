"""`vswitchd-qemu-ifup` / `vswitchd-qemu-ifdown`: QEMU's tap scripts for vswitchd.

    VSWITCHD_VLAN=10 qemu-system-x86_64 ... \\
      -netdev tap,id=n0,ifname=vm1-eth0,script=vswitchd-qemu-ifup,downscript=vswitchd-qemu-ifdown

QEMU runs the ifup script with the tap's name once it has created the tap,
and the ifdown script with the same name before it closes it, as it runs
/etc/qemu-ifup for a bridge.  The port (a netdev port on the tap, named
after it unless VSWITCHD_PORT names it) takes its keys from the
environment, VSWITCHD_ and the key in capitals (VSWITCHD_MODE=trunk,
VSWITCHD_VLANS=10-20, VSWITCHD_ACLS=web,ssh, VSWITCHD_OFFLOAD_CSUM=off),
and from key=value arguments after the name, which win.  The checks are
the config file's; a bad key or a daemon that is not running fails the
script, and QEMU refuses to start the guest.  ifdown never fails.
"""

from __future__ import annotations

import os
import sys

from vswitchd.cli import call
from vswitchd.config import check_port_name
from vswitchd.errors import ConfigError, VswitchError
from vswitchd.port_args import KV_KEYS, port_from_kv
from vswitchd.protocol import DEFAULT_SOCKET, SOCKET_ENV

OWNER = "qemu-ifup"
TIMEOUT_S = 5.0
ENV_PREFIX = "VSWITCHD_"
# Keys the script sets itself: the tap is the interface.
_FIXED = ("type", "ifname", "netns", "socket", "socket_mode")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "_")


def pairs_from(environ: dict[str, str], args: list[str]) -> list[str]:
    given = {k.partition("=")[0].strip(): k for k in args}
    for key in given:
        if key in _FIXED:
            raise ConfigError(f"{key}: set by the script (the tap QEMU made is the interface)")
    from_env = [f"{key}={environ[env_name(key)]}" for key in KV_KEYS
                if key not in _FIXED and env_name(key) in environ and key not in given]
    return from_env + list(given.values())


def _port_name(ifname: str) -> str:
    return os.environ.get(ENV_PREFIX + "PORT") or ifname


def ifup(argv: list[str]) -> int:
    if not argv:
        print("usage: vswitchd-qemu-ifup IFNAME [key=value...]", file=sys.stderr)
        return 2
    ifname, extra = argv[0], argv[1:]
    name = _port_name(ifname)
    try:
        check_port_name(name)
        pairs = ["type=netdev", f"ifname={ifname}", *pairs_from(dict(os.environ), extra)]
        port_from_kv(name, pairs)
        call(os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET, "port/attach",
             {"by": OWNER, "ports": [{"name": name, "pairs": pairs}]}, TIMEOUT_S)
    except VswitchError as exc:
        print(f"vswitchd-qemu-ifup {ifname}: {exc}", file=sys.stderr)
        return 1
    return 0


def ifdown(argv: list[str]) -> int:
    if not argv:
        print("usage: vswitchd-qemu-ifdown IFNAME", file=sys.stderr)
        return 2
    try:
        call(os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET, "port/detach",
             {"by": OWNER, "names": [_port_name(argv[0])]}, TIMEOUT_S)
    except VswitchError as exc:
        # QEMU is closing the tap anyway, and the port goes with it.
        print(f"vswitchd-qemu-ifdown {argv[0]}: warning: {exc}", file=sys.stderr)
    return 0


def main_ifup() -> int:
    return ifup(sys.argv[1:])


def main_ifdown() -> int:
    return ifdown(sys.argv[1:])


if __name__ == "__main__":
    # python -m vswitchd.qemu_ifup up|down IFNAME ...
    if len(sys.argv) < 2 or sys.argv[1] not in ("up", "down"):
        print("usage: python -m vswitchd.qemu_ifup up|down IFNAME [key=value...]",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(ifup(sys.argv[2:]) if sys.argv[1] == "up" else ifdown(sys.argv[2:]))
