"""The keys of type = "vhostuser" ports (vswitchd/vhost_config.py)."""

from __future__ import annotations

import pytest

from vswitchd import config
from vswitchd.errors import ConfigError


def port_error(table: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        config.parse_port("vm1", table)
    return str(exc.value)


def test_vhostuser_port_takes_socket_mode_queues_and_the_usual_keys() -> None:
    p = config.parse_port("vm1", {"type": "vhostuser", "socket": "/run/vswitchd/vm1.sock",
                                  "socket_mode": "client", "queues": 4, "mode": "trunk",
                                  "vlans": "10-12", "offload": {"tso": False},
                                  "max_macs": 4})
    assert p.vhost is not None
    assert (p.vhost.socket, p.vhost.socket_mode, p.queues) == ("/run/vswitchd/vm1.sock",
                                                               "client", 4)
    assert p.vlans == ((10, 12),) and p.max_macs == 4 and not p.offload.tso
    assert config.parse_port("vm1", p.to_dict()) == p


def test_socket_mode_defaults_to_server() -> None:
    p = config.parse_port("vm1", {"type": "vhostuser", "socket": "/tmp/x.sock"})
    assert p.vhost is not None and p.vhost.socket_mode == "server"


@pytest.mark.parametrize("table, message", [
    ({"type": "vhostuser"}, "ports.vm1.socket: required key is missing"),
    ({"type": "vhostuser", "socket": "vm1.sock"}, 'ports.vm1.socket: "vm1.sock" is not an '
     "absolute path"),
    ({"type": "vhostuser", "socket": "/" + "a" * 120}, "ports.vm1.socket: "),
    ({"type": "vhostuser", "socket": "/a", "socket_mode": "listen"},
     'ports.vm1.socket_mode: "listen" is not one of server, client'),
    ({"type": "vhostuser", "socket": "/a", "queues": 17}, "ports.vm1.queues: 17 is not in 1-16"),
    ({"type": "vhostuser", "socket": "/a", "netns": "x"}, "ports.vm1.netns: not allowed"),
    ({"type": "tap", "socket": "/a"}, 'ports.vm1.socket: not allowed for type "tap"'),
])
def test_bad_vhost_values_are_refused_naming_the_key(table: dict, message: str) -> None:
    assert port_error(table).startswith(message)


def test_vhostuser_port_cannot_be_a_mirror_output() -> None:
    text = """
[ports.vm1]
type = "vhostuser"
socket = "/tmp/vm1.sock"
[ports.t1]
type = "tap"
[mirrors.m]
output_port = "vm1"
select_src_ports = ["t1"]
"""
    with pytest.raises(ConfigError, match="mirrors.m.output_port: .* vhostuser"):
        config.loads(text)
