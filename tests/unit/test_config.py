"""vswitchd.config: the TOML contract, its error messages, port add/set and diff."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vswitchd import config
from vswitchd.config import (
    Config,
    ConfigDiff,
    OffloadConfig,
    PortConfig,
    diff,
    from_dict,
    load,
    loads,
    parse_port,
    parse_vlans,
    port_from_kv,
    port_update,
    with_port,
    without_port,
)
from vswitchd.errors import ConfigError, VswitchError

REPO = Path(__file__).resolve().parents[2]

BASE = """
[switch]
workers = 2
mac_aging_s = 300

[ports.vm0]
type = "tap"
vlan = 10

[ports.up]
type = "netdev"
ifname = "eth1"
mode = "trunk"
vlans = "1-100,200"
native_vlan = 1
"""


def error_of(fn, *args) -> str:
    """The message of the ConfigError raised by fn(*args), checked to be one line."""
    with pytest.raises(ConfigError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def port_error(table: dict, name: str = "vm1") -> str:
    return error_of(from_dict, {"ports": {name: table}})


# --- Loading and defaults ---------------------------------------------------------

def test_default_config_file_loads():
    cfg = load(REPO / "configs" / "vswitchd.toml")
    assert list(cfg.ports) == ["vm0", "vm1", "vm2", "trunk0"]
    assert [p.ifname for p in cfg.ports.values()] == [
        "vsw-vm0", "vsw-vm1", "vsw-vm2", "vsw-trunk0"]
    assert all(p.type == "tap" and p.netns is None for p in cfg.ports.values())
    assert [cfg.ports[n].vlan for n in ("vm0", "vm1", "vm2")] == [1, 1, 10]
    trunk = cfg.ports["trunk0"]
    assert (trunk.mode, trunk.vlans, trunk.native_vlan) == ("trunk", ((1, 4094),), 1)
    assert cfg.management.socket == "/run/vswitchd/vswitchd.sock"
    assert cfg.metrics.host == "127.0.0.1"


def test_empty_file_gives_defaults_and_no_ports():
    cfg = loads("")
    assert cfg == Config()
    assert cfg.switch.workers == 0 and cfg.switch.cpus is None
    assert cfg.management.socket_mode == 0o660 and cfg.management.socket_group is None
    assert (cfg.metrics.enabled, cfg.metrics.port) == (True, 9477)
    assert len(cfg.ports) == 0


def test_port_defaults_ifname_to_its_name_and_access_vlan_1():
    port = loads('[ports.vm5]\ntype = "tap"').ports["vm5"]
    assert port == PortConfig(name="vm5", type="tap", ifname="vm5")
    assert (port.mode, port.vlan, port.queues, port.offload) == ("access", 1, 1, OffloadConfig())


def test_missing_file_says_cannot_read(tmp_path):
    path = tmp_path / "nope.toml"
    assert error_of(load, path) == f"{path}: cannot read: No such file or directory"


def test_toml_syntax_error_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[switch]\nworkers = \n")
    message = error_of(load, path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in message


def test_errors_are_vswitch_errors_with_key():
    with pytest.raises(VswitchError) as info:
        loads("[switch]\nworkers = 300")
    assert isinstance(info.value, ConfigError)
    assert info.value.key == "switch.workers"


def test_config_round_trips_through_to_dict():
    cfg = loads(BASE + '[management]\nsocket_group = "kvm"\n')
    assert from_dict(cfg.to_dict()) == cfg
    for port in cfg.ports.values():
        assert parse_port(port.name, port.to_dict()) == port


def test_to_dict_has_only_keys_for_type_and_mode():
    cfg = loads(BASE)
    assert cfg.ports["vm0"].to_dict() == {
        "type": "tap", "ifname": "vm0", "queues": 1, "mode": "access", "vlan": 10,
        "persist": False, "offload": {"csum": True, "tso": True}}
    assert cfg.ports["up"].to_dict() == {
        "type": "netdev", "ifname": "eth1", "queues": 1, "mode": "trunk",
        "vlans": "1-100,200", "native_vlan": 1, "offload": {"csum": True, "tso": True}}


def test_config_is_hashable_and_equal_by_value_regardless_of_port_order():
    a = loads(BASE)
    b = from_dict({"switch": {"workers": 2},
                   "ports": dict(reversed(list(loads(BASE).to_dict()["ports"].items())))})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.ports["x"] = a.ports["vm0"]  # type: ignore[index]


# --- Error messages ---------------------------------------------------------------

def test_access_vlan_out_of_range_names_key_and_range():
    assert port_error({"type": "tap", "vlan": 5000}) == "ports.vm1.vlan: 5000 is not in 1-4094"


def test_mode_typo_lists_the_allowed_modes():
    assert port_error({"type": "tap", "mode": "acess"}) == (
        'ports.vm1.mode: "acess" is not one of access, trunk')


def test_unknown_key_is_rejected_with_allowed_keys():
    assert error_of(loads, "[switch]\nbogus = 1") == (
        "switch.bogus: unknown key (allowed: workers, cpus, mac_aging_s, mac_table_size, "
        "rxq_assign, rebalance_interval_s, rebalance_load_threshold, rebalance_improvement, "
        "rebalance_sample_s, busy_poll_us, acl_sessions)")
    assert port_error({"type": "tap", "offload": {"gro": True}}) == (
        "ports.vm1.offload.gro: unknown key (allowed: csum, tso)")


def test_unknown_section_is_rejected():
    assert error_of(loads, "[bridge]\nx = 1") == (
        "bridge: unknown section (allowed: switch, management, metrics, acls, ports, "
        "mirrors, evpn)")


def test_invalid_vlan_list_is_rejected():
    for text in ("5-3", "", "1,,2", "0-10", "1-4095", "a", "1-2-3"):
        assert port_error({"type": "netdev", "mode": "trunk", "vlans": text}, "up") == (
            f'ports.up.vlans: "{text}" is not a valid VLAN list '
            "(ranges like 1-100,200 within 1-4094)")


@pytest.mark.parametrize("key, value", [
    ("queues", True), ("vlan", True), ("mtu", False)])
def test_bool_where_int_expected_is_rejected(key, value):
    message = port_error({"type": "tap", key: value})
    assert message.startswith(f"ports.vm1.{key}: {str(value).lower()} is not an integer in ")


def test_string_where_int_expected_is_rejected():
    assert error_of(loads, '[switch]\nmac_aging_s = "300"') == (
        'switch.mac_aging_s: "300" is not an integer in 1-1000000')


def test_int_where_bool_expected_is_rejected():
    assert port_error({"type": "tap", "persist": 1}) == (
        "ports.vm1.persist: 1 is not a boolean (true or false)")


def test_missing_type_is_required():
    assert port_error({"vlan": 3}) == (
        "ports.vm1.type: required key is missing (one of tap, netdev, vxlan, vhostuser)")


def test_vlan_on_trunk_port_is_not_allowed():
    assert port_error({"type": "tap", "mode": "trunk", "vlan": 3}) == (
        'ports.vm1.vlan: not allowed for mode "trunk" (only for mode "access")')


def test_vlans_on_access_port_is_not_allowed():
    assert port_error({"type": "tap", "vlans": "1-3"}) == (
        'ports.vm1.vlans: not allowed for mode "access" (only for mode "trunk")')
    assert port_error({"type": "tap", "native_vlan": 1}).startswith(
        "ports.vm1.native_vlan: not allowed for mode")


@pytest.mark.parametrize("key, value", [("netns", "ctr0"), ("persist", True)])
def test_tap_only_keys_are_rejected_on_netdev(key, value):
    assert port_error({"type": "netdev", key: value}, "up") == (
        f'ports.up.{key}: not allowed for type "netdev" (only for type "tap")')


def test_native_vlan_must_be_allowed():
    assert port_error({"type": "netdev", "mode": "trunk", "vlans": "1-100,200",
                       "native_vlan": 150}, "up") == (
        "ports.up.native_vlan: 150 is not in the port's vlans 1-100,200 "
        "(the native VLAN must be allowed)")


def test_two_ports_with_same_ifname_are_rejected():
    message = error_of(from_dict, {"ports": {"a": {"type": "tap", "ifname": "x"},
                                             "b": {"type": "netdev", "ifname": "x"}}})
    assert message == (
        'ports.b.ifname: "x" is already used by port a (each port needs its own interface)')


def test_same_ifname_in_different_namespaces_is_allowed():
    cfg = from_dict({"ports": {"a": {"type": "tap", "ifname": "eth0", "netns": "c1"},
                               "b": {"type": "tap", "ifname": "eth0", "netns": "c2"}}})
    assert len(cfg.ports) == 2


@pytest.mark.parametrize("ifname", ["", "a" * 16, "a/b", "a b", "eth0:1", ".", ".."])
def test_invalid_ifname_is_rejected(ifname):
    assert port_error({"type": "tap", "ifname": ifname}).startswith(
        f'ports.vm1.ifname: "{ifname}" is not a valid interface name (1-15 characters')


def test_port_name_too_long_for_ifname_asks_for_explicit_ifname():
    name = "a-rather-long-port"
    assert port_error({"type": "tap"}, name).endswith("; set ifname")
    assert from_dict({"ports": {name: {"type": "tap", "ifname": "short"}}}).ports[name]


@pytest.mark.parametrize("name", ["", "a b", "x" * 33, "vm/0"])
def test_invalid_port_name_is_rejected(name):
    assert port_error({"type": "tap"}, name) == (
        f'ports: "{name}" is not a valid port name (1-32 of A-Z a-z 0-9 _ . -)')


def test_netns_with_slash_is_rejected():
    assert port_error({"type": "tap", "netns": "../x"}).startswith(
        'ports.vm1.netns: "../x" is not a valid netns name')


def test_out_of_range_switch_values_are_rejected():
    assert error_of(loads, "[switch]\nworkers = 65") == "switch.workers: 65 is not in 0-64"
    assert error_of(loads, "[switch]\nmac_table_size = 8") == (
        "switch.mac_table_size: 8 is not in 16-1048576")
    assert error_of(loads, '[switch]\nrxq_assign = "rr"') == (
        'switch.rxq_assign: "rr" is not one of roundrobin, cycles')


def test_cpus_must_be_distinct_non_negative_ints():
    assert loads("[switch]\ncpus = [2, 0]").switch.cpus == (2, 0)
    assert error_of(loads, "[switch]\ncpus = [0, 0]") == (
        "switch.cpus: CPU 0 is listed twice (each CPU at most once)")
    assert error_of(loads, "[switch]\ncpus = [0, -1]") == (
        "switch.cpus[1]: -1 is not in 0-8191")
    assert error_of(loads, "[switch]\ncpus = []").startswith("switch.cpus: [] is not a list")


def test_management_socket_must_be_absolute_and_mode_octal():
    assert error_of(loads, '[management]\nsocket = "run/x.sock"').startswith(
        'management.socket: "run/x.sock" is not an absolute path')
    assert error_of(loads, "[management]\nsocket_mode = 660") == (
        'management.socket_mode: 660 is not an octal mode string (like "0660")')
    assert loads('[management]\nsocket_mode = "0600"').management.socket_mode == 0o600


@pytest.mark.parametrize("listen, host, port", [
    ("127.0.0.1:9477", "127.0.0.1", 9477), ("[::1]:9100", "::1", 9100),
    ("localhost:80", "localhost", 80), ("", None, None)])
def test_metrics_listen_is_parsed(listen, host, port):
    metrics = loads(f'[metrics]\nlisten = "{listen}"').metrics
    assert (metrics.host, metrics.port, metrics.enabled) == (host, port, bool(listen))


@pytest.mark.parametrize("listen", ["::1:9477", "1.2.3.4", "host:0", "host:99999",
                                    "300.1.1.1:80", "[::1]9477", ":9477"])
def test_bad_metrics_listen_is_rejected(listen):
    assert error_of(loads, f'[metrics]\nlisten = "{listen}"') == (
        f'metrics.listen: "{listen}" is not a valid listen address '
        '(host:port, [ipv6]:port, or "" to disable)')


def test_section_that_is_not_a_table_is_rejected():
    assert error_of(loads, "switch = 1").startswith("switch: 1 is not a table")


def test_newlines_in_values_do_not_break_the_one_line_message():
    message = port_error({"type": "tap", "ifname": "a\nb"})
    assert message.startswith('ports.vm1.ifname: "a\\nb" is not')


# --- VLAN lists -------------------------------------------------------------------

def test_trunk_vlan_list_is_normalized():
    port = parse_port("up", {"type": "netdev", "mode": "trunk", "vlans": "200, 5-10,1-4,9-20"})
    assert port.vlans == ((1, 20), (200, 200))
    assert port.vlans_text() == "1-20,200"


def test_allows_vlan_follows_mode():
    cfg = loads(BASE)
    assert cfg.ports["vm0"].allows_vlan(10) and not cfg.ports["vm0"].allows_vlan(1)
    up = cfg.ports["up"]
    assert [up.allows_vlan(v) for v in (1, 100, 101, 200, 201)] == [True, True, False, True, False]


vlan_sets = st.sets(st.integers(1, 4094), min_size=1, max_size=200)


@given(vlan_sets)
def test_random_vlan_lists_round_trip_through_text(vids):
    ranges = parse_vlans(",".join(str(v) for v in sorted(vids, reverse=True)))
    assert {v for lo, hi in ranges for v in range(lo, hi + 1)} == vids
    assert all(a_hi + 1 < b_lo for (_, a_hi), (b_lo, _) in zip(ranges, ranges[1:], strict=False))
    port = PortConfig(name="t", type="tap", ifname="t", mode="trunk", vlans=ranges)
    assert parse_vlans(port.vlans_text()) == ranges
    assert all(port.allows_vlan(v) == (v in vids) for v in (1, 2, 100, 4093, 4094))


# --- vswitchctl port add / port set -------------------------------------------------

def test_port_from_kv_types_values_by_key():
    port = port_from_kv("vm9", ["type=tap", "vlan=10", "offload.csum=off", "persist=yes",
                                "mtu=9000", "queues=4"])
    assert port == PortConfig(name="vm9", type="tap", ifname="vm9", vlan=10, persist=True,
                              mtu=9000, queues=4, offload=OffloadConfig(csum=False))


def test_port_from_kv_errors_name_the_key():
    assert error_of(port_from_kv, "vm9", ["type=tap", "vlan=ten"]) == (
        'ports.vm9.vlan: "ten" is not an integer in 1-4094')
    assert error_of(port_from_kv, "vm9", ["type=tap", "colour=red"]).startswith(
        "ports.vm9.colour: unknown key (allowed: type, ifname, queues,")
    assert error_of(port_from_kv, "vm9", ["type=tap", "persist=maybe"]) == (
        'ports.vm9.persist: "maybe" is not a boolean (true or false)')
    assert error_of(port_from_kv, "vm9", ["tap"]).startswith(
        'ports.vm9: "tap" is not a key=value pair')
    assert error_of(port_from_kv, "vm9", ["type=tap", "vlan=2", "vlan=3"]) == (
        "ports.vm9.vlan: given more than once (give each key once)")


def test_port_set_switching_to_trunk_defaults_to_all_vlans():
    access = port_from_kv("vm0", ["type=tap", "vlan=10"])
    trunk = port_update(access, ["mode=trunk"])
    assert (trunk.mode, trunk.vlans, trunk.native_vlan) == ("trunk", ((1, 4094),), None)
    assert trunk.vlan == 1  # the access VLAN is dropped, not carried over


def test_port_set_switching_to_access_drops_trunk_vlans():
    trunk = port_from_kv("up", ["type=netdev", "ifname=eth1", "mode=trunk", "vlans=5-9",
                                "native_vlan=5"])
    access = port_update(trunk, ["mode=access", "vlan=7"])
    assert access == PortConfig(name="up", type="netdev", ifname="eth1", vlan=7)


def test_port_set_keeps_other_keys_and_revalidates():
    port = port_from_kv("vm0", ["type=tap", "vlan=10", "mtu=9000"])
    assert port_update(port, ["offload.tso=false"]) == dataclasses.replace(
        port, offload=OffloadConfig(tso=False))
    assert port_update(port, ["mtu="]).mtu is None  # empty value resets to the default
    assert error_of(port_update, port, ["vlans=1-3"]) == (
        'ports.vm0.vlans: not allowed for mode "access" (only for mode "trunk")')


@pytest.mark.parametrize("pair", ["type=netdev", "ifname=other", "netns=ctr0"])
def test_port_set_cannot_change_identity(pair):
    port = port_from_kv("vm0", ["type=tap"])
    key = pair.split("=")[0]
    assert error_of(port_update, port, [pair]) == (
        f"ports.vm0.{key}: cannot be changed with port set (delete the port and add it again)")
    assert port_update(port, ["type=tap"]) == port  # restating the same value is fine


def test_with_port_adds_replaces_and_checks_ifname():
    cfg = loads(BASE)
    vm1 = port_from_kv("vm1", ["type=tap"])
    assert list(with_port(cfg, vm1).ports) == ["vm0", "up", "vm1"]
    replaced = with_port(cfg, dataclasses.replace(cfg.ports["vm0"], vlan=20))
    assert replaced.ports["vm0"].vlan == 20 and list(replaced.ports) == ["vm0", "up"]
    clash = port_from_kv("vm1", ["type=tap", "ifname=eth1"])
    assert error_of(with_port, cfg, clash) == (
        'ports.vm1.ifname: "eth1" is already used by port up (each port needs its own interface)')


def test_without_port_removes_or_reports_missing():
    cfg = loads(BASE)
    assert list(without_port(cfg, "vm0").ports) == ["up"]
    assert error_of(without_port, cfg, "nope") == "ports.nope: no such port"


# --- Diff -------------------------------------------------------------------------

def test_diff_of_equal_configs_is_empty():
    result = diff(loads(BASE), loads(BASE))
    assert result == ConfigDiff() and result.empty and result.restart_required == ()


def test_diff_reports_added_removed_changed_ports():
    old = loads(BASE)
    new = with_port(without_port(old, "up"), port_from_kv("vm2", ["type=tap"]))
    new = with_port(new, dataclasses.replace(old.ports["vm0"], vlan=11))
    result = diff(old, new)
    assert (result.added, result.removed, result.changed, result.recreate) == (
        ("vm2",), ("up",), ("vm0",), ())
    assert not result.empty


def test_diff_marks_ports_that_must_be_reopened():
    old = loads(BASE)
    new = with_port(old, dataclasses.replace(old.ports["vm0"], queues=2))
    new = with_port(new, dataclasses.replace(old.ports["up"], mtu=9000))
    result = diff(old, new)
    assert (result.changed, result.recreate) == (("up", "vm0"), ("vm0",))


def test_diff_reports_switch_fields_and_which_need_restart():
    old = loads(BASE)
    new = loads(BASE.replace("workers = 2", "workers = 4").replace(
        "mac_aging_s = 300", "mac_aging_s = 60"))
    result = diff(old, new)
    assert result.switch_changed == ("workers", "mac_aging_s")
    assert result.restart_required == ("workers",)
    assert not result.management_changed and not result.metrics_changed


def test_diff_reports_management_and_metrics_changes():
    old = loads(BASE)
    new = loads(BASE + '[metrics]\nlisten = ""\n[management]\nsocket_mode = "0600"\n')
    result = diff(old, new)
    assert result.metrics_changed and result.management_changed and not result.empty


def test_module_exposes_contract_names():
    for name in ("load", "loads", "from_dict", "parse_port", "port_from_kv", "port_update",
                 "with_port", "without_port", "diff", "Config", "ConfigDiff", "PortConfig",
                 "SwitchConfig", "ManagementConfig", "MetricsConfig", "OffloadConfig"):
        assert hasattr(config, name)


# --- Port guards ----------------------------------------------------------------------

GUARDED = {"type": "tap", "allowed_macs": ["02:00:00:00:00:01", "02:00:00:00:00:0A"],
           "max_macs": 4, "dhcp_guard": True, "router_guard": True, "broadcast_pps": 100,
           "multicast_pps": 200, "unknown_unicast_pps": 300}


def test_guards_default_to_off():
    port = parse_port("vm1", {"type": "tap"})
    assert (port.allowed_macs, port.max_macs, port.dhcp_guard, port.router_guard) == (
        (), None, False, False)
    assert (port.broadcast_pps, port.multicast_pps, port.unknown_unicast_pps) == (
        None, None, None)
    assert not {"allowed_macs", "max_macs", "dhcp_guard", "router_guard", "broadcast_pps",
                "multicast_pps", "unknown_unicast_pps"} & port.to_dict().keys()


def test_guard_keys_are_parsed_and_macs_normalized():
    port = parse_port("vm1", GUARDED)
    assert port.allowed_macs == ("02:00:00:00:00:01", "02:00:00:00:00:0a")
    assert (port.max_macs, port.dhcp_guard, port.router_guard) == (4, True, True)
    assert (port.broadcast_pps, port.multicast_pps, port.unknown_unicast_pps) == (
        100, 200, 300)
    assert parse_port("vm1", port.to_dict()) == port


@pytest.mark.parametrize("value, message", [
    (["zz"], '"zz" is not a MAC address'),
    (["02:00:00:00:00"], '"02:00:00:00:00" is not a MAC address'),
    (["02-00-00-00-00-01"], '"02-00-00-00-00-01" is not a MAC address'),
    ([5], "5 is not a MAC address"),
    (["01:00:5e:00:00:01"], '"01:00:5e:00:00:01" is a multicast address (sources are unicast)'),
    (["02:00:00:00:00:01", "02:00:00:00:00:01"],
     '"02:00:00:00:00:01" is listed twice (each MAC at most once)'),
    ("02:00:00:00:00:01",
     '"02:00:00:00:00:01" is not a list of MAC addresses (like ["02:00:00:00:00:01"])'),
    ([f"02:00:00:00:01:{i:02x}" for i in range(65)],
     "65 MAC addresses are too many (at most 64)"),
])
def test_bad_allowed_macs_are_rejected(value, message):
    assert port_error({"type": "tap", "allowed_macs": value}) == (
        f"ports.vm1.allowed_macs: {message}")


def test_sixty_four_allowed_macs_are_accepted():
    macs = [f"02:00:00:00:01:{i:02x}" for i in range(64)]
    assert len(parse_port("vm1", {"type": "tap", "allowed_macs": macs}).allowed_macs) == 64


@pytest.mark.parametrize("key, value, message", [
    ("max_macs", 0, "0 is not in 1-65536"),
    ("max_macs", 65537, "65537 is not in 1-65536"),
    ("max_macs", "2", '"2" is not an integer in 1-65536'),
    ("broadcast_pps", 0, "0 is not in 1-10000000"),
    ("multicast_pps", 10_000_001, "10000001 is not in 1-10000000"),
    ("unknown_unicast_pps", True, "true is not an integer in 1-10000000"),
    ("dhcp_guard", 1, "1 is not a boolean (true or false)"),
    ("router_guard", "yes", '"yes" is not a boolean (true or false)'),
])
def test_bad_guard_values_are_rejected(key, value, message):
    assert port_error({"type": "tap", key: value}) == f"ports.vm1.{key}: {message}"


def test_guard_keys_in_kv_form():
    port = port_from_kv("vm9", ["type=tap", "allowed_macs=02:00:00:00:00:01, 02:00:00:00:00:02",
                                "max_macs=8", "dhcp_guard=on", "router_guard=yes",
                                "broadcast_pps=50", "multicast_pps=60",
                                "unknown_unicast_pps=70"])
    assert port.allowed_macs == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert (port.max_macs, port.dhcp_guard, port.router_guard) == (8, True, True)
    assert (port.broadcast_pps, port.multicast_pps, port.unknown_unicast_pps) == (50, 60, 70)


def test_guard_kv_errors_name_the_key():
    assert error_of(port_from_kv, "vm9", ["type=tap", "allowed_macs=02:00:00:00:00:01,zz"]) == (
        'ports.vm9.allowed_macs: "zz" is not a MAC address')
    assert error_of(port_from_kv, "vm9", ["type=tap", "max_macs=0"]) == (
        "ports.vm9.max_macs: 0 is not in 1-65536")
    assert error_of(port_from_kv, "vm9", ["type=tap", "broadcast_pps=lots"]) == (
        'ports.vm9.broadcast_pps: "lots" is not an integer in 1-10000000')
    assert error_of(port_from_kv, "vm9", ["type=tap", "dhcp_guard=maybe"]) == (
        'ports.vm9.dhcp_guard: "maybe" is not a boolean (true or false)')


def test_port_set_changes_and_clears_guards():
    port = port_from_kv("vm0", ["type=tap", "allowed_macs=02:00:00:00:00:01", "max_macs=2",
                                "broadcast_pps=10"])
    changed = port_update(port, ["allowed_macs=02:00:00:00:00:01,02:00:00:00:00:02",
                                 "max_macs=3"])
    assert changed.allowed_macs == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert (changed.max_macs, changed.broadcast_pps) == (3, 10)
    cleared = port_update(changed, ["allowed_macs=", "max_macs=", "broadcast_pps="])
    assert (cleared.allowed_macs, cleared.max_macs, cleared.broadcast_pps) == ((), None, None)


def test_guard_change_is_an_in_place_port_change():
    old = loads(BASE)
    new = with_port(old, dataclasses.replace(old.ports["vm0"], dhcp_guard=True))
    result = diff(old, new)
    assert result.changed == ("vm0",) and result.recreate == ()


def test_rx_ring_is_a_netdev_key_with_three_values():
    port = parse_port("up", {"type": "netdev", "ifname": "eth1", "rx_ring": "v3"})
    assert port.rx_ring == "v3" and port.to_dict()["rx_ring"] == "v3"
    assert parse_port("up", {"type": "netdev", "ifname": "eth1"}).rx_ring is None
    assert port_error({"type": "tap", "rx_ring": "v3"}) == (
        'ports.vm1.rx_ring: not allowed for type "tap" (only for type "netdev")')
    assert port_error({"type": "netdev", "ifname": "eth1", "rx_ring": "v4"}) == (
        'ports.vm1.rx_ring: "v4" is not one of off, v2, v3')
