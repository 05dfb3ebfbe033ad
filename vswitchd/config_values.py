"""Configuration values: each checker takes (value, key path) and returns the
clean value, or raises one ConfigError line naming the key and what is
allowed.  Pure functions; config.py composes them into sections and ports.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from vswitchd.errors import ConfigError

T = TypeVar("T")

VLAN_MIN, VLAN_MAX = 1, 4094
_VLAN_ITEM_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MODE_RE = re.compile(r"0?[0-7]{3}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
MAX_ALLOWED_MACS = 64   # csrc/vs_guard.h VS_GUARD_MAX_ALLOWED_MACS
_IFNAMSIZ = 16      # including the NUL, so names are 1..15 bytes
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), including the NUL
_MAX_CPU = 8191     # Linux NR_CPUS is at most 8192
IFNAME_RULES = '1-15 characters, no "/", ":" or whitespace, not "." or ".."'
_VLANS_RULES = "ranges like 1-100,200 within 1-4094"
_LISTEN_RULES = 'host:port, [ipv6]:port, or "" to disable'


# --- VLAN lists ---------------------------------------------------------------------

def parse_vlans(text: object, key: str = "vlans") -> tuple[tuple[int, int], ...]:
    """"1-100,200" -> ((1, 100), (200, 200)): sorted, overlaps and neighbours merged."""
    if not isinstance(text, str):
        raise err(key, f"{show(text)} is not a VLAN list string ({_VLANS_RULES})")
    ranges = []
    for item in text.split(","):
        match = _VLAN_ITEM_RE.fullmatch(item.strip())
        lo, hi = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
        if not VLAN_MIN <= lo <= hi <= VLAN_MAX:
            raise err(key, f"{show(text)} is not a valid VLAN list ({_VLANS_RULES})")
        ranges.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def format_vlans(ranges: Iterable[tuple[int, int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


# --- Value checkers: each takes (value, key path) and returns the clean value --------

def err(key: str, problem: str) -> ConfigError:
    return ConfigError(f"{key}: {problem}" if key else problem, key=key or None)


def show(value: object) -> str:
    """A value as the user would have written it in TOML, kept short and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # dates and times
        return " ".join(str(value).split())


def check_keys(data: object, path: str, allowed: tuple[str, ...],
                what: str = "key") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise err(path, f"{show(data)} is not a table (keys: {', '.join(allowed)})")
    for key in data:
        if key not in allowed:
            raise err(f"{path}.{key}" if path else key,
                       f"unknown {what} (allowed: {', '.join(allowed)})")
    return data


def get_key(table: dict[str, Any], path: str, key: str, default: T,
         check: Callable[[Any, str], T]) -> T:
    return check(table[key], f"{path}.{key}") if key in table else default


def int_in(lo: int, hi: int) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        # bool is an int subclass: `vlan = true` must not mean VLAN 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(key, f"{show(value)} is not an integer in {lo}-{hi}")
        if not lo <= value <= hi:
            raise err(key, f"{value} is not in {lo}-{hi}")
        return value
    return check


def one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if value not in choices or not isinstance(value, str):
            raise err(key, f"{show(value)} is not one of {', '.join(choices)}")
        return value
    return check


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise err(key, f"{show(value)} is not a boolean (true or false)")
    return value


def text_value(rules: str, ok: Callable[[str], bool]) -> Callable[[Any, str], str]:
    """A checker for a string value that must satisfy `ok`; `rules` says what is allowed."""
    def check(value: Any, key: str) -> str:
        if not isinstance(value, str) or not ok(value):
            raise err(key, f"{show(value)} is not {rules}")
        return value
    return check


def ifname_ok(value: str) -> bool:
    # Linux dev_valid_name(): also rejects ":" (alias syntax) and "." / "..".
    return (0 < len(value.encode()) < _IFNAMSIZ and value not in (".", "..")
            and not any(c in "/:\0" or c.isspace() for c in value))


def listen_ok(value: str) -> bool:
    try:
        return not value or bool(split_listen(value))
    except ValueError:
        return False


interface_name = text_value(f"a valid interface name ({IFNAME_RULES})", ifname_ok)
netns_name = text_value('a valid netns name (a name in /run/netns: no "/")', lambda v: (
    0 < len(v) <= 255 and v not in (".", "..") and "/" not in v and "\0" not in v))
socket_file = text_value(f"an absolute path (shorter than {_SUN_PATH_MAX} bytes)", lambda v: (
    v.startswith("/") and "\0" not in v and len(v.encode()) < _SUN_PATH_MAX))
mode_text = text_value('an octal mode string (like "0660")', lambda v: bool(_MODE_RE.fullmatch(v)))
group_text = text_value('a group name (or "" to leave the group alone)', lambda v: not any(
    c in ":\0" or c.isspace() for c in v))
listen_address = text_value(f"a valid listen address ({_LISTEN_RULES})", listen_ok)


def octal_mode(value: Any, key: str) -> int:
    return int(mode_text(value, key), 8)


def group_name(value: Any, key: str) -> str | None:
    return group_text(value, key) or None


def cpu_list(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise err(key, f"{show(value)} is not a list of CPU numbers "
                   "(like [0, 1]; omit cpus to use all online CPUs)")
    cpus = tuple(int_in(0, _MAX_CPU)(cpu, f"{key}[{i}]") for i, cpu in enumerate(value))
    for i, cpu in enumerate(cpus):
        if cpu in cpus[:i]:
            raise err(key, f"CPU {cpu} is listed twice (each CPU at most once)")
    return cpus


def mac_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise err(key, f"{show(value)} is not a list of MAC addresses "
                   '(like ["02:00:00:00:00:01"])')
    if len(value) > MAX_ALLOWED_MACS:
        raise err(key, f"{len(value)} MAC addresses are too many (at most {MAX_ALLOWED_MACS})")
    macs: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _MAC_RE.fullmatch(item):
            raise err(key, f"{show(item)} is not a MAC address")
        mac = item.lower()
        if int(mac[:2], 16) & 1:
            raise err(key, f"{show(item)} is a multicast address (sources are unicast)")
        if mac in macs:
            raise err(key, f"{show(item)} is listed twice (each MAC at most once)")
        macs.append(mac)
    return tuple(macs)


def split_listen(text: str) -> tuple[str, int]:
    """"127.0.0.1:9477" -> ("127.0.0.1", 9477); "[::1]:9477" -> ("::1", 9477)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = text.rpartition(":")
        if not _HOST_RE.fullmatch(host):
            raise ValueError(text)
        if re.fullmatch(r"[0-9.]+", host):
            ipaddress.IPv4Address(host)
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) <= 65535:
        raise ValueError(text)
    return host, int(port)
