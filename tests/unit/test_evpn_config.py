"""[evpn] and the vxlan keys that depend on it, and what the EVPN reconciler
derives from them (RD, route targets, which received routes it imports),
without gobgpd."""

from __future__ import annotations

import pytest

from vswitchd import config
from vswitchd.errors import ConfigError

PORT = '''
[ports.vx0]
type = "vxlan"
local_ip = "10.255.0.1"
vni_map = { 10 = 5010, 20 = 5020 }
'''
EVPN = '''
[evpn]
asn = 65000
router_id = "10.255.0.1"
neighbors = ["10.255.0.2"]
'''


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        config.loads(text)
    return str(e.value)


def test_learning_defaults_on_without_evpn_and_off_with_it():
    assert config.loads(PORT).ports["vx0"].vxlan.learning is True
    assert config.loads(PORT + EVPN).ports["vx0"].vxlan.learning is False
    explicit = PORT.replace("vni_map", "learning = true\nvni_map")
    assert config.loads(explicit + EVPN).ports["vx0"].vxlan.learning is True


def test_evpn_section_round_trips_with_per_vni_overrides():
    text = PORT + EVPN + '''
[evpn.vni.5010]
rd = "10.255.0.1:99"
route_targets = ["65000:1", "65000:2"]
'''
    cfg = config.loads(text)
    o = cfg.evpn.override(5010)
    assert (o.rd, o.route_targets) == ("10.255.0.1:99", ("65000:1", "65000:2"))
    assert cfg.evpn.override(5020).rd is None
    assert config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("extra, message", [
    ('gobgpd = "nowhere"', 'evpn.gobgpd: "nowhere" is not "spawn" or HOST:PORT'),
    ('[evpn.vni.5010]\nrd = "x"', "evpn.vni.5010.rd:"),
    ('[evpn.vni.5010]\nroute_targets = ["1"]', "evpn.vni.5010.route_targets:"),
    ('[evpn.vni.99999999]\nrd = "1:1"', "evpn.vni.99999999:"),
    ('[evpn.vni.5010]\ncolor = 1', "evpn.vni.5010.color: unknown key"),
])
def test_bad_evpn_keys_are_refused_naming_the_key(extra, message):
    assert message in error_of(PORT + EVPN + extra)


def test_router_id_must_be_ipv4_and_asn_is_required():
    assert "evpn.router_id:" in error_of(PORT + EVPN.replace('"10.255.0.1"', '"fe80::1"'))
    assert "evpn.asn: required key is missing" in error_of(
        PORT + EVPN.replace("asn = 65000\n", ""))


def test_reconciler_derives_frr_defaults_and_honours_overrides():
    pytest.importorskip("vswitchd.gobgp")  # needs the stubs make build generates
    from vswitchd.evpn import Evpn
    from vswitchd.gobgp import MacRoute

    cfg = config.loads(PORT + EVPN + '[evpn.vni.5020]\nroute_targets = ["65000:7"]\n')
    e = Evpn(cfg.evpn, switch=None)
    assert e._rd(10, 5010) == "10.255.0.1:10" and e._rt(5010) == ("65000:5010",)
    assert e._rt(5020) == ("65000:7",)

    def route(vni: int, rts: tuple[str, ...]) -> MacRoute:
        return MacRoute(vni, "02:00:00:00:00:01", "10.255.0.2", "10.255.0.2:1", rts)

    assert e._imports(route(5010, ("65000:5010",)))      # no override: by VNI
    assert e._imports(route(5020, ("65000:7",)))
    assert not e._imports(route(5020, ("65000:5020",)))  # override: by route target too


def test_evpn_change_takes_effect_at_restart():
    a, b = config.loads(PORT + EVPN), config.loads(PORT + EVPN.replace("65000", "65001"))
    d = config.diff(a, b)
    assert d.evpn_changed and "evpn" in d.awaiting_restart


def test_vxlan_and_evpn_show_text():
    from vswitchd.vxlan_report import format_evpn, format_show

    vx = [{"name": "vx0", "local_ip": "10.255.0.1", "dstport": 4789, "learning": False,
           "mtu": 1450, "vnis": [{"vlan": 10, "vni": 5010}],
           "vteps": [{"address": "10.255.0.2", "flood": True, "tx_packets": 3, "tx_bytes": 300,
                      "rx_packets": 2, "rx_bytes": 200}],
           "decap_drops": {"vxlan_short": 1}, "oversize": 0}]
    text = format_show(vx)
    assert "vx0: VTEP 10.255.0.1:4789, learning off, inner MTU 1450" in text
    assert "VNIs (VLAN=VNI): 10=5010" in text
    assert text.splitlines()[3].split() == ["10.255.0.2", "yes", "3", "300", "2", "200"]
    assert "decap drops: vxlan_short 1; oversize 0" in text
    assert format_show([]) == "no vxlan ports"
    ev = {"enabled": True, "asn": 65000, "router_id": "10.255.0.1", "gobgpd": "127.0.0.1:1",
          "spawned": True, "restarts": 0,
          "sessions": [{"neighbor": "10.255.0.2", "state": "established"}],
          "routes": {"sent": {"type2": 1, "type3": 1}, "received": {"type2": 2, "type3": 1}},
          "flood_list": ["10.255.0.2"]}
    text = format_evpn(ev)
    assert "neighbor 10.255.0.2: established" in text
    assert "routes sent: type-2 1, type-3 1; received: type-2 2, type-3 1" in text
    assert format_evpn({"enabled": False}) == "evpn: not configured"


def test_a_vxlan_port_cannot_be_a_mirror_output():
    text = PORT + '''
[ports.t1]
type = "tap"
[mirrors.m]
output_port = "vx0"
select_src_ports = ["t1"]
'''
    assert "mirrors.m.output_port" in error_of(text)
    assert "vxlan port" in error_of(text)
