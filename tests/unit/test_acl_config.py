"""[acls.NAME] rule sets and a port's policy keys: what the config accepts,
and the one-line errors naming the key for what it refuses."""

from __future__ import annotations

import pytest

from vswitchd.config import diff, loads
from vswitchd.errors import ConfigError

WEB = '''
[acls.web]
rules = [
  { name = "ssh-in",  weight = 200, direction = "in",  action = "allow", protocol = "tcp", local_port = "22", remote_ip = "10.0.0.0/8" },
  { name = "out-tcp", weight = 100, direction = "out", action = "allow", protocol = "tcp", stateful = true, idle_timeout_s = 3600 },
  { name = "count-dns", weight = 90, direction = "out", action = "meter", protocol = "udp", remote_port = "53" },
  { name = "deny-all", weight = 1,  direction = "both", action = "deny" },
]
'''  # noqa: E501 - the issue's example, as an operator writes it
VM1 = '''
[ports.vm1]
type = "tap"
acls = ["web"]
acl_default = "allow"
max_bandwidth_out = "500Mbit"
max_bandwidth_in  = "1Gbit"
max_burst = "256KiB"
'''


def error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        loads(text)
    return str(exc.value)


def test_the_issue_example_loads_as_written():
    cfg = loads(WEB + VM1)
    port = cfg.ports["vm1"]
    assert port.acls == ("web",) and port.acl_default == "allow"
    assert (port.max_bandwidth_out, port.max_bandwidth_in, port.max_burst) == (
        500_000_000, 1_000_000_000, 262_144)
    rules = cfg.acls["web"].rules
    assert [r.name for r in rules] == ["ssh-in", "out-tcp", "count-dns", "deny-all"]
    assert rules[0].local_port == (22, 22) and str(rules[0].remote_ip) == "10.0.0.0/8"
    assert rules[1].stateful and rules[1].idle_timeout_s == 3600
    assert loads(WEB + VM1) == cfg     # a value: equal configs compare equal


@pytest.mark.parametrize("rule,message", [
    ('{ name = "a", weight = 1, direction = "in", action = "deny", remote_ip = "10.0.0.300/8" }',
     'acls.web.rules[0].remote_ip: "10.0.0.300/8" is not an address or CIDR'),
    ('{ name = "a", weight = 1, direction = "in", action = "deny", colour = "red" }',
     "acls.web.rules[0].colour: unknown key"),
    ('{ name = "a", weight = 1, direction = "in", action = "deny", protocol = "tcp", '
     'local_port = "90-80" }', 'acls.web.rules[0].local_port: "90-80" is backwards'),
    ('{ name = "a", weight = 1, direction = "in", action = "deny", local_port = "80" }',
     'acls.web.rules[0].local_port: needs protocol "tcp" or "udp"'),
    ('{ name = "a", weight = 1, direction = "sideways", action = "deny" }',
     'acls.web.rules[0].direction: "sideways" is not one of in, out, both'),
    ('{ name = "a", weight = 1, direction = "in", action = "deny", stateful = true }',
     'acls.web.rules[0].stateful: only an "allow" rule can be stateful'),
    ('{ weight = 1, direction = "in", action = "deny" }',
     "acls.web.rules[0].name: required key is missing"),
    ('{ name = "a", weight = 1, direction = "in", action = "deny", local_ip = "10.0.0.1", '
     'remote_ip = "fd00::1" }', "acls.web.rules[0].remote_ip: is IPv6 but local_ip is IPv4"),
])
def test_a_bad_rule_is_refused_naming_its_key(rule, message):
    assert error(f"[acls.web]\nrules = [ {rule} ]\n").startswith(message)


def test_a_set_that_does_not_exist_is_refused():
    assert error(WEB + VM1.replace('["web"]', '["web", "db"]')) == (
        'ports.vm1.acls: no ACL set "db" (defined: web)')


def test_two_rules_with_one_weight_and_direction_are_refused_across_sets():
    other = '[acls.db]\nrules = [ { name = "x", weight = 200, direction = "both", ' \
            'action = "deny" } ]\n'
    assert error(WEB + other + VM1.replace('["web"]', '["web", "db"]')) == (
        "ports.vm1.acls: rules web.ssh-in and db.x both have weight 200 in direction \"in\" "
        "(weights order the rules: make them differ)")


@pytest.mark.parametrize("key,value,message", [
    ("max_bandwidth_out", '"fast"', 'ports.vm1.max_bandwidth_out: "fast" is not a rate'),
    ("max_bandwidth_in", '"1Tbit"', 'ports.vm1.max_bandwidth_in: "1Tbit" is not a rate'),
    ("max_burst", '"12"', 'ports.vm1.max_burst: "12" is not within 3028 bytes-1GiB'),
    ("acl_default", '"maybe"', 'ports.vm1.acl_default: "maybe" is not one of allow, deny'),
])
def test_bad_policy_keys_are_refused_naming_the_key(key, value, message):
    text = f'[ports.vm1]\ntype = "tap"\n{key} = {value}\n'
    assert error(text).startswith(message)


def test_rates_and_sizes_read_as_hyper_v_writes_them():
    cfg = loads('[ports.a]\ntype = "tap"\nmax_bandwidth_out = "1.5Gbit"\n'
                'max_bandwidth_in = 100000000\nmax_burst = "1MB"\n')
    a = cfg.ports["a"]
    assert (a.max_bandwidth_out, a.max_bandwidth_in, a.max_burst) == (
        1_500_000_000, 100_000_000, 1_000_000)


def test_a_changed_rule_set_is_a_change_even_with_the_ports_unchanged():
    old = loads(WEB + VM1)
    new = loads(WEB.replace("weight = 90", "weight = 91") + VM1)
    d = diff(old, new)
    assert d.acls_changed == ("web",) and not d.changed and not d.empty


def test_to_dict_round_trips_a_policy():
    from vswitchd.config import from_dict
    cfg = loads(WEB + VM1)
    assert from_dict(cfg.to_dict()) == cfg
