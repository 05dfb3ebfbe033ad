"""The [attach.NAME] sections: rules that turn interfaces into ports as they appear.

    [attach.vms]
    ifname = "vnet*"        # shell glob (fnmatch) on names in the daemon's namespace
    type = "netdev"         # netdev (default), or tap for a persistent tap vswitchd owns
    mode = "access"         # then any port key: vlan, vlans, native_vlan, guards,
    vlan = 10               # offload, acls, max_bandwidth_*, ...

A rule's port keys go through the same parse_port() as a [ports.X] table,
so they are checked the same way; errors name "attach.NAME.KEY".  `netns`
is refused: rules watch the daemon's own namespace.

Overlap: two rules overlap when some interface name matches both globs
(whether or not such an interface exists now).  That is a config error
naming both keys and a name they share, so which rule made a port never
depends on the order of the file.  Deciding it is an intersection of two
regular languages, small enough to search (`common_name`).

Pure, like the rest of the config.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vswitchd.config_values import err, show
from vswitchd.errors import ConfigError

ATTACH_PORT_TYPES = ("netdev", "tap")
IFNAMSIZ = 16
# Characters a Linux interface name can hold that a witness may use.
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:+=@"


@dataclass(frozen=True)
class AttachRule:
    name: str
    ifname: str             # the glob
    template: Any           # a PortConfig; its name and ifname are placeholders

    def matches(self, ifname: str) -> bool:
        return fnmatch.fnmatchcase(ifname, self.ifname)

    def port_for(self, ifname: str) -> Any:
        """The port this rule makes for interface `ifname` (named after it)."""
        return dataclasses.replace(self.template, name=ifname, ifname=ifname)

    def to_dict(self) -> dict[str, Any]:
        table = self.template.to_dict()
        table["ifname"] = self.ifname
        return table


def parse_attach_rules(data: object, acls: Mapping[str, Any]) -> tuple[tuple[str, AttachRule],
                                                                        ...]:
    """Validate every [attach.NAME] table; (name, rule) pairs sorted by name."""
    # config.py imports this module: import its port parser only when called.
    from vswitchd.acl_config import port_rules
    from vswitchd.config import check_port_name, parse_port

    if not isinstance(data, dict):
        raise err("attach", f"{show(data)} is not a table (one [attach.NAME] per rule)")
    rules: dict[str, AttachRule] = {}
    for name, table in data.items():
        check_port_name(name, "attach")
        base = f"attach.{name}"
        if not isinstance(table, dict):
            raise err(base, f"{show(table)} is not a table")
        if "ifname" not in table:
            raise err(f"{base}.ifname", 'required key is missing (a glob such as "vnet*")')
        glob = table["ifname"]
        if not isinstance(glob, str) or not glob or len(glob) > 64 or "/" in glob:
            raise err(f"{base}.ifname", f"{show(glob)} is not an interface name glob")
        if "netns" in table:
            raise err(f"{base}.netns", "not allowed (rules watch the daemon's namespace)")
        keys = {"type": "netdev", **table, "ifname": "placeholder0"}
        if keys["type"] not in ATTACH_PORT_TYPES:
            raise err(f"{base}.type", f"{show(keys['type'])} is not one of "
                       f"{', '.join(ATTACH_PORT_TYPES)}")
        template = parse_port(name, keys, path="attach")
        try:
            port_rules(name, template.acls, acls)
        except ConfigError as exc:
            raise err(f"{base}.acls", str(exc).split(": ", 1)[-1]) from None
        rules[name] = AttachRule(name=name, ifname=glob, template=template)
    names = sorted(rules)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = common_name(rules[a].ifname, rules[b].ifname)
            if shared is not None:
                raise err(f"attach.{b}.ifname", f"{show(rules[b].ifname)} overlaps "
                           f"attach.{a}.ifname {show(rules[a].ifname)} (both match "
                           f"{show(shared)}; one interface, one rule)")
    return tuple((n, rules[n]) for n in names)


def rule_for(rules: tuple[tuple[str, AttachRule], ...], ifname: str) -> AttachRule | None:
    """The rule matching `ifname` (rules never overlap, so at most one)."""
    for _, rule in rules:
        if rule.matches(ifname):
            return rule
    return None


# --- Glob intersection ------------------------------------------------------------

# A token: "*" (any run), or a character class (negated, frozenset of chars).
_Token = str | tuple[bool, frozenset[str]]


def _tokens(glob: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            if not out or out[-1] != "*":
                out.append("*")
        elif c == "?":
            out.append((True, frozenset()))
        elif c == "[":
            # Bracket syntax as fnmatch reads it: "!" negates, a "]" first is
            # literal, and a "[" without a closing "]" is a plain character.
            j = i + 1
            if glob[j:j + 1] == "!":
                j += 1
            if glob[j:j + 1] == "]":
                j += 1
            while j < len(glob) and glob[j] != "]":
                j += 1
            if j >= len(glob):
                out.append((False, frozenset("[")))
            else:
                body = glob[i + 1:j]
                negated = body.startswith("!")
                out.append((negated, _class_chars(body[1:] if negated else body)))
                i = j
        else:
            out.append((False, frozenset(c)))
        i += 1
    return out


def _class_chars(body: str) -> frozenset[str]:
    chars: set[str] = set()
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            chars.update(chr(c) for c in range(ord(body[k]), ord(body[k + 2]) + 1))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    return frozenset(chars)


def _common_char(a: tuple[bool, frozenset[str]], b: tuple[bool, frozenset[str]]) -> str | None:
    (neg_a, set_a), (neg_b, set_b) = a, b
    for c in sorted(set_a | set_b) + list(_ALPHABET):
        if (c in set_a) != neg_a and (c in set_b) != neg_b:
            return c
    return None


_ANY = (True, frozenset[str]())


def common_name(glob_a: str, glob_b: str) -> str | None:
    """A name of at most IFNAMSIZ-1 characters both globs match, or None."""
    ta, tb = _tokens(glob_a), _tokens(glob_b)
    seen: set[tuple[int, int, int]] = set()

    def search(i: int, j: int, length: int) -> str | None:
        if (i, j, length) in seen or length > IFNAMSIZ - 1:
            return None
        seen.add((i, j, length))
        if i == len(ta) and j == len(tb):
            return "" if length else None     # an empty name is no interface
        if i < len(ta) and ta[i] == "*":
            found = search(i + 1, j, length)
            if found is not None:
                return found
        if j < len(tb) and tb[j] == "*":
            found = search(i, j + 1, length)
            if found is not None:
                return found
        if i < len(ta) and j < len(tb):
            ca = _ANY if ta[i] == "*" else ta[i]
            cb = _ANY if tb[j] == "*" else tb[j]
            c = _common_char(ca, cb)  # type: ignore[arg-type]
            if c is not None:
                rest = search(i if ta[i] == "*" else i + 1, j if tb[j] == "*" else j + 1,
                              length + 1)
                if rest is not None:
                    return c + rest
        return None

    return search(0, 0, 0)
