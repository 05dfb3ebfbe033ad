"""[attach.NAME] rules: parsing, checks, and the overlap of two globs."""

from __future__ import annotations

import fnmatch
import itertools

import pytest

from vswitchd import config
from vswitchd.attach_config import common_name, rule_for
from vswitchd.errors import ConfigError


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        config.loads(text)
    return str(e.value)


def test_rule_makes_ports_named_after_the_interface_with_its_keys() -> None:
    cfg = config.loads('[acls.web]\nrules = []\n'
                       '[attach.vms]\nifname = "vnet*"\nmode = "access"\nvlan = 10\n'
                       'acls = ["web"]\nmax_bandwidth_out = "500Mbit"\n')
    rule = rule_for(cfg.attach, "vnet7")
    assert rule is not None and rule_for(cfg.attach, "eth0") is None
    port = rule.port_for("vnet7")
    assert (port.name, port.ifname, port.type, port.vlan, port.acls) == (
        "vnet7", "vnet7", "netdev", 10, ("web",))
    assert port.max_bandwidth_out == 500_000_000
    assert config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("text", "message"), [
    ('[attach.a]\nvlan = 3', 'attach.a.ifname: required key is missing (a glob such as "vnet*")'),
    ('[attach.a]\nifname = "v*"\nvlan = 5000', "attach.a.vlan: 5000 is not in 1-4094"),
    ('[attach.a]\nifname = "v*"\nacls = ["nope"]',
     'attach.a.acls: no ACL set "nope" (defined: none)'),
    ('[attach.a]\nifname = "v*"\nnetns = "x"',
     "attach.a.netns: not allowed (rules watch the daemon's namespace)"),
    ('[attach.a]\nifname = "v*"\ntype = "vxlan"',
     'attach.a.type: "vxlan" is not one of netdev, tap'),
    ('[attach.a]\nifname = "v*"\nmode = "access"\nvlans = "1-3"',
     'attach.a.vlans: not allowed for mode "access" (only for mode "trunk")'),
    ('[attach.a]\nifname = "vnet*"\n[attach.b]\nifname = "*7"',
     'attach.b.ifname: "*7" overlaps attach.a.ifname "vnet*" (both match "vnet7"; '
     'one interface, one rule)'),
])
def test_bad_rules_are_one_line_errors_naming_the_key(text: str, message: str) -> None:
    assert error_of(text) == message


def test_rules_whose_globs_share_no_name_may_coexist() -> None:
    cfg = config.loads('[attach.a]\nifname = "vnet[0-3]*"\nvlan = 10\n'
                       '[attach.b]\nifname = "vnet[4-9]*"\nvlan = 20\n'
                       '[attach.c]\nifname = "tap?"\n')
    assert [n for n, _ in cfg.attach] == ["a", "b", "c"]


@pytest.mark.parametrize(("a", "b", "shared"), [
    ("vnet*", "vnet7", True), ("vnet*", "tap*", False), ("vm[0-9]", "vm?", True),
    ("vm[!0-9]", "vm[0-9]", False), ("a*b", "*c", False), ("*", "*", True),
    ("web-*", "web-?x*", True), ("x[", "x[", True),
    ("a" * 15 + "*", "*" + "b" * 15, False),   # would share only a name longer than IFNAMSIZ
])
def test_common_name_finds_a_name_both_globs_match(a: str, b: str, shared: bool) -> None:
    name = common_name(a, b)
    assert (name is not None) == shared
    if name is not None:
        assert fnmatch.fnmatchcase(name, a) and fnmatch.fnmatchcase(name, b)


def test_common_name_agrees_with_brute_force_on_small_globs() -> None:
    globs = ["".join(p) for n in range(1, 4) for p in itertools.product("ab*?", repeat=n)]
    names = ["".join(p) for n in range(1, 7) for p in itertools.product("abc", repeat=n)]
    for a, b in itertools.combinations(globs, 2):
        brute = any(fnmatch.fnmatchcase(n, a) and fnmatch.fnmatchcase(n, b) for n in names)
        assert (common_name(a, b) is not None) == brute, (a, b)
