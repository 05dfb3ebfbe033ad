"""`vswitchd-libvirt-hook`: libvirt's qemu hook, plugging domains into vswitchd.

libvirtd runs /etc/libvirt/hooks/qemu as `qemu DOMAIN OPERATION SUBOP -`
with the domain XML on stdin.  A domain asks for ports in its metadata:

    <domain xmlns:vswitchd="urn:vswitchd:1"> ...
      <metadata><vswitchd:ports>
        <vswitchd:port mac="52:54:00:12:34:56" vlan="10" acls="web"/>
      </vswitchd:ports></metadata>

and each listed MAC must be one of the domain's interfaces:
- `ethernet` (libvirt made the tap, QEMU holds it): a netdev port on the
  tap `<target dev>`, named after it;
- `vhostuser`: a vhost-user port in server mode at the `<source path>`,
  named after the socket file (needs the vhostuser port type).
Every other attribute is a port key, with the names and the checks of the
config file (`vswitchctl port add` words: acls="a,b" is a list).

Operations:
- `start begin` (the tap exists, QEMU has not started the guest): attach
  all of the domain's ports in one request, or none.  Any failure -- daemon
  down, bad attribute, unknown ACL set, a MAC no interface has -- exits 1
  with one line on stderr, which libvirt puts in the error of `virsh start`,
  and the domain does not start: a VM never boots unplugged.
- `reconnect begin` (libvirtd restarted while the domain runs): the same
  request; ports already attached are left alone, missing ones re-added.
  It never fails: libvirt kills a running domain whose reconnect hook
  fails, and a guest left running unplugged (with a warning) beats one
  killed because the switch was down.
- `stopped` / `release`: detach the domain's ports.  Never fails: the
  domain is gone either way, and so is a tap's port when its tap goes.
- anything else: nothing.
Every call to the daemon has a short timeout, so libvirt never waits long.

After a daemon restart the ports come back from the daemon's own record
(vswitchd/attach.py), for the taps that still exist.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vswitchd.cli import call
from vswitchd.config import check_port_name
from vswitchd.errors import ConfigError, VswitchError
from vswitchd.port_args import port_from_kv
from vswitchd.protocol import DEFAULT_SOCKET, SOCKET_ENV

NS = "urn:vswitchd:1"
QEMU_USER = "libvirt-qemu"      # Debian's libvirt runs QEMU as this user
TIMEOUT_S = 5.0
# Set by the hook from the domain's interface, never by the metadata.
_HOOK_KEYS = ("type", "ifname", "netns", "socket", "socket_mode")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class HookError(Exception):
    """One line for libvirt's error message."""


@dataclass(frozen=True)
class Request:
    name: str           # the port's name
    mac: str
    pairs: list[str]    # key=value words, as `vswitchctl port add` takes them


def owner(domain: str) -> str:
    return f"libvirt {domain}"


def _port_name(text: str, what: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:32]
    try:
        check_port_name(name)
    except ConfigError:
        raise HookError(f"{what}: cannot make a port name of {text!r}") from None
    return name


def parse_domain(xml_text: str) -> list[Request]:
    """The ports the domain XML asks for; raises HookError naming what is wrong."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise HookError(f"domain XML on stdin is not XML: {exc}") from None
    wanted = root.findall(f"./metadata/{{{NS}}}ports/{{{NS}}}port")
    if not wanted:
        return []
    interfaces: dict[str, ET.Element] = {}
    for iface in root.findall("./devices/interface"):
        mac_el = iface.find("mac")
        if mac_el is not None and mac_el.get("address"):
            interfaces[mac_el.get("address", "").lower()] = iface
    requests: list[Request] = []
    for el in wanted:
        mac = (el.get("mac") or "").lower()
        where = f'<vswitchd:port mac="{el.get("mac", "")}">'
        if not _MAC_RE.fullmatch(mac):
            raise HookError(f"{where}: mac is missing or not a MAC address")
        found = interfaces.get(mac)
        if found is None:
            raise HookError(f"{where}: no interface of the domain has this MAC")
        iface = found
        pairs = []
        for key, value in el.attrib.items():
            if key == "mac":
                continue
            if key in _HOOK_KEYS:
                raise HookError(f"{where}: {key} is set from the domain's interface, "
                                "not in the metadata")
            pairs.append(f"{key}={value}")
        kind = iface.get("type")
        if kind == "ethernet":
            target = iface.find("target")
            dev = target.get("dev") if target is not None else None
            if not dev:
                raise HookError(f"{where}: the ethernet interface has no <target dev>")
            name = _port_name(dev, where)
            pairs = ["type=netdev", f"ifname={dev}", *pairs]
        elif kind == "vhostuser":
            source = iface.find("source")
            path = source.get("path") if source is not None else None
            if not path:
                raise HookError(f"{where}: the vhostuser interface has no <source path>")
            if source is not None and source.get("mode", "client") != "client":
                raise HookError(f'{where}: vhostuser needs <source mode="client"> '
                                "(vswitchd serves the socket)")
            base = os.path.basename(path)
            name = _port_name(base.removesuffix(".sock"), where)
            pairs = ["type=vhostuser", f"socket={path}", "socket_mode=server", *pairs]
        else:
            raise HookError(f'{where}: interface type "{kind}" cannot be attached '
                            "(ethernet or vhostuser)")
        try:
            port_from_kv(name, pairs)       # the config file's checks, before the daemon's
        except ConfigError as exc:
            raise HookError(f"{where}: {_strip_path(str(exc), name)}") from None
        requests.append(Request(name, mac, pairs))
    return requests


def _strip_path(message: str, name: str) -> str:
    """"ports.NAME.vlan: ..." -> "vlan: ...": the operator wrote an attribute."""
    return message.replace(f"ports.{name}.", "", 1)


def _socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def attach(domain: str, requests: list[Request]) -> str:
    args = {"by": owner(domain),
            "ports": [{"name": r.name, "pairs": r.pairs} for r in requests]}
    try:
        result = call(_socket(), "port/attach", args, TIMEOUT_S)
    except VswitchError as exc:
        message = str(exc)
        for r in requests:
            if message.startswith(f"ports.{r.name}."):
                message = f'<vswitchd:port mac="{r.mac}">: {_strip_path(message, r.name)}'
        raise HookError(message) from None
    try:
        for r in requests:
            if "type=vhostuser" in r.pairs:
                _hand_socket_to_qemu(next(p for p in r.pairs if p.startswith("socket="))[7:])
    except HookError:
        with contextlib.suppress(VswitchError):
            detach(domain, requests)    # all or none
        raise
    return str(result.get("message", ""))


def _hand_socket_to_qemu(path: str) -> None:
    """libvirt's QEMU runs as QEMU_USER and connects to the socket vswitchd
    serves: make it theirs (group too), once the daemon has created it."""
    try:
        pw = pwd.getpwnam(QEMU_USER)
    except KeyError:
        return                          # QEMU runs as root here
    deadline = time.monotonic() + TIMEOUT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise HookError(f"vhost-user socket {path} did not appear within {TIMEOUT_S:g} s")
        time.sleep(0.05)
    try:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    except OSError as exc:
        raise HookError(f"cannot hand {path} to {QEMU_USER}: {exc.strerror}") from None


def detach(domain: str, requests: list[Request]) -> str:
    result = call(_socket(), "port/detach",
                  {"by": owner(domain), "names": [r.name for r in requests]}, TIMEOUT_S)
    return str(result.get("message", ""))


def run(argv: list[str], stdin_text: str) -> int:
    if len(argv) < 3:
        print("usage: vswitchd-libvirt-hook DOMAIN OPERATION SUBOP [EXTRA] < domain.xml",
              file=sys.stderr)
        return 2
    domain, operation, subop = argv[0], argv[1], argv[2]
    starting = (operation, subop) == ("start", "begin")
    plugging = starting or (operation, subop) == ("reconnect", "begin")
    unplugging = operation in ("stopped", "release")
    if not (plugging or unplugging):
        return 0
    prefix = f"vswitchd: domain {domain}"
    try:
        requests = parse_domain(stdin_text)
    except HookError as exc:
        if unplugging:
            return 0
        print(f"{prefix}: {exc}" if starting else f"{prefix}: warning: {exc}", file=sys.stderr)
        return 1 if starting else 0
    if not requests:
        return 0
    if unplugging:
        try:
            detach(domain, requests)
        except VswitchError as exc:
            # The domain is gone either way; its tap ports go with their taps.
            print(f"{prefix}: warning: {exc}", file=sys.stderr)
        return 0
    try:
        attach(domain, requests)
    except HookError as exc:
        print(f"{prefix}: {exc}" if starting else f"{prefix}: warning: {exc}", file=sys.stderr)
        return 1 if starting else 0
    return 0


def main() -> int:
    return run(sys.argv[1:], sys.stdin.read())


if __name__ == "__main__":
    sys.exit(main())
