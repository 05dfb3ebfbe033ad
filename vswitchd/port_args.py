"""`vswitchctl port add NAME key=value...` and `port set`: words to a port.

The words are typed by key ("vlan=10" is an int, "dhcp_guard=on" a bool,
"allowed_macs=a,b" a list), nested for dotted keys ("offload.csum=false"),
and then handed to the same parse_port() the config file goes through, so
both accept exactly the same ports and report the same one-line errors.
"""

from __future__ import annotations

import re
from typing import Any

from vswitchd.config import (
    GUARD_BOOL_KEYS,
    GUARD_INT_KEYS,
    MODE_ONLY,
    OFFLOAD_KEYS,
    PORT_KEYS,
    PortConfig,
    check_port_name,
    parse_port,
)
from vswitchd.config_values import err, show

_KV_KEYS = tuple(k for k in PORT_KEYS if k != "offload") + tuple(
    f"offload.{k}" for k in OFFLOAD_KEYS)
# The words `port add` takes; vswitchd/qemu_ifup.py also reads them from the environment.
KV_KEYS = _KV_KEYS
_KV_INT_KEYS = ("queues", "vlan", "native_vlan", "mtu") + GUARD_INT_KEYS
_KV_BOOL_KEYS = ("persist", "offload.csum", "offload.tso") + GUARD_BOOL_KEYS
_KV_LIST_KEYS = ("allowed_macs", "acls")
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


def port_from_kv(name: str, pairs: list[str]) -> PortConfig:
    """Build a port from `key=value` words; an empty value means the default."""
    check_port_name(name)
    table: dict[str, Any] = {}
    for key, value in _parse_pairs(name, pairs).items():
        _set_dotted(table, key, value)
    return parse_port(name, table)


def port_update(port: PortConfig, pairs: list[str]) -> PortConfig:
    """Apply `key=value` words over `port` and validate the result as a whole.

    Changing mode drops the old mode's VLAN keys, so the new mode starts from
    its defaults (trunk: all VLANs, no native VLAN; access: VLAN 1) unless the
    same command sets them.  An empty value resets a key to its default.
    """
    changes = _parse_pairs(port.name, pairs)
    for key in ("type", "ifname", "netns"):
        if key in changes and changes[key] != getattr(port, key):
            raise err(f"ports.{port.name}.{key}",
                       "cannot be changed with port set (delete the port and add it again)")
    table = port.to_dict()
    if "mode" in changes and (changes["mode"] or "access") != port.mode:
        for key in MODE_ONLY:
            table.pop(key, None)
    for key, value in changes.items():
        _set_dotted(table, key, value)
    return parse_port(port.name, table)


def _parse_pairs(name: str, pairs: list[str]) -> dict[str, Any]:
    """`key=value` words -> {dotted key: typed value, or None for an empty value}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise err(f"ports.{name}", f"{show(pair)} is not a key=value pair "
                       f"(keys: {', '.join(_KV_KEYS)})")
        path = f"ports.{name}.{key}"
        if key not in _KV_KEYS:
            raise err(path, f"unknown key (allowed: {', '.join(_KV_KEYS)})")
        if key in out:
            raise err(path, "given more than once (give each key once)")
        out[key] = _kv_value(key, raw)
    return out


def _kv_value(key: str, raw: str) -> Any:
    # Values that do not convert stay strings, so parse_port reports them with
    # the same message as the file would ("abc" is not an integer in 1-4094).
    if raw == "":
        return None
    if key in _KV_INT_KEYS and re.fullmatch(r"[+-]?[0-9]+", raw):
        return int(raw)
    if key in _KV_BOOL_KEYS:
        return _BOOL_WORDS.get(raw.lower(), raw)
    if key in _KV_LIST_KEYS:
        return [item.strip() for item in raw.split(",")]
    return raw


def _set_dotted(table: dict[str, Any], key: str, value: Any) -> None:
    """Set (or, for None, remove) `key`, which may be "offload.csum", in `table`."""
    head, _, leaf = key.rpartition(".")
    target = table.setdefault(head, {}) if head else table
    if value is None:
        target.pop(leaf, None)
    else:
        target[leaf] = value
