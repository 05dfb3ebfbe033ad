"""vswitchctl against a real ControlServer running on uvloop in a background thread."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from vswitchd import cli
from vswitchd.control import ControlServer
from vswitchd.errors import VswitchError

SHOW: dict[str, Any] = {
    "switch": {"workers": 2, "mac_entries": 3, "mac_table_size": 8192, "mac_aging_s": 300,
               "config_generation": 1},
    "ports": [
        {"name": "vm0", "type": "tap", "ifname": "vsw-vm0", "netns": None, "mode": "access",
         "vlan": 10, "vlans": None, "native_vlan": None, "link": "up", "queues": 1,
         "offload": {"csum": True, "tso": True}, "rx_packets": 10, "rx_bytes": 1000,
         "tx_packets": 5, "tx_bytes": 500, "drops": 2, "drops_by_reason": {"runt": 2},
         "rx_ring": None, "rx_ring_stats": None, "rx_ring_queues": None},
        {"name": "uplink", "type": "netdev", "ifname": "eth1", "netns": None, "mode": "trunk",
         "vlan": None, "vlans": [*range(1, 101), 200], "native_vlan": 1, "link": "down",
         "queues": 4, "offload": {"csum": True, "tso": False}, "rx_packets": 123456,
         "rx_bytes": 98765432, "tx_packets": 0, "tx_bytes": 0, "drops": 0,
         "drops_by_reason": {}, "rx_ring": "v3",
         "rx_ring_stats": {"blocks": 70, "frames": 123456, "truncated": 0, "vlan_restored": 0,
                           "kernel_packets": 123500, "kernel_drops": 44, "kernel_freezes": 2},
         "rx_ring_queues": [{"rx_ring": "v3", "frames": 30864}] * 4},
        {"name": "ct1", "type": "veth", "ifname": "eth0", "netns": "ct1", "mode": "trunk",
         "vlan": None, "vlans": None, "native_vlan": None, "link": "up", "queues": 1,
         "offload": {}, "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
         "drops": 0, "drops_by_reason": {}},
        {"name": "up2", "type": "netdev", "ifname": "eth2", "netns": None, "mode": "access",
         "vlan": 1, "vlans": None, "native_vlan": None, "link": "up", "queues": 1,
         "offload": {"csum": True, "tso": True}, "rx_packets": 7, "rx_bytes": 420,
         "tx_packets": 0, "tx_bytes": 0, "drops": 0, "drops_by_reason": {},
         "rx_ring": "off", "rx_ring_stats": None, "rx_ring_queues": [{"rx_ring": "off"}]},
    ],
}

SHOW_TEXT = """\
vswitchd: 2 workers, 3/8192 MAC entries, aging 300 s, config generation 1
PORT    TYPE    IFNAME    LINK  MODE    VLANS                 QUEUES  RX_RING  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS
vm0     tap     vsw-vm0   up    access  10                    1       -        10       1000      5        500       2
uplink  netdev  eth1      down  trunk   1-100,200 (native 1)  4       v3       123456   98765432  0        0         0
ct1     veth    eth0@ct1  up    trunk   all                   1       -        0        0         0        0         0
up2     netdev  eth2      up    access  1                     1       off      7        420       0        0         0
rx ring uplink (v3): frames 123456, blocks 70, kernel_packets 123500, kernel_drops 44, kernel_freezes 2, truncated 0, vlan_restored 0"""  # noqa: E501

FDB = [
    {"vlan": 10, "mac": "02:00:00:00:00:02", "port": "vm0", "age_s": 3},
    {"vlan": 1, "mac": "02:00:00:00:00:09", "port": "uplink", "age_s": 120},
    {"vlan": 10, "mac": "02:00:00:00:00:01", "port": "vm1", "age_s": 0},
]

FDB_TEXT = """\
  port  VLAN  MAC                Age
uplink     1  02:00:00:00:00:09  120
   vm1    10  02:00:00:00:00:01    0
   vm0    10  02:00:00:00:00:02    3"""

WORKERS: list[dict[str, Any]] = [
    {"worker": 0, "cpu": 0, "busy_ratio": 0.12,
     "rx_queues": [{"port": "vm0", "queue": 0, "busy_ratio": 0.05},
                   {"port": "uplink", "queue": 1, "busy_ratio": 0.07}]},
    {"worker": 1, "cpu": None, "busy_ratio": 0.0, "rx_queues": []},
]

WORKERS_TEXT = """\
WORKER  CPU  BUSY   RX_QUEUES
0       0    12.0%  vm0/0 (5.0%), uplink/1 (7.0%)
1       -    0.0%   -"""

STATS = {
    "ports": [
        {"name": "vm0", "counters": {"rx_packets": 1, "rx_bytes": 60, "tx_packets": 0},
         "drops": {"runt": 0, "vlan_not_allowed": 3}},
        {"name": "vm1", "counters": {"rx_packets": 0}, "drops": {}},
    ],
    "mac_table": {"learned": 4, "moved": 1, "aged": 2, "flushed": 0, "full": 0},
}

STATS_TEXT = """\
port vm0:
  rx_packets          1
  rx_bytes            60
  tx_packets          0
  drops:
    runt              0
    vlan_not_allowed  3
port vm1:
  rx_packets          0
  drops: none
mac table:
  learned             4
  moved               1
  aged                2
  flushed             0
  full                0"""

COMMANDS = [
    {"name": "fdb/show", "usage": "[--vlan N] [--port P]", "help": "List learned MAC addresses"},
    {"name": "list-commands", "usage": "", "help": "List the available commands"},
]

COMMANDS_TEXT = """\
COMMAND        USAGE                  HELP
fdb/show       [--vlan N] [--port P]  List learned MAC addresses
list-commands                         List the available commands"""

RESULTS: dict[str, Any] = {
    "show": SHOW,
    "fdb/show": FDB,
    "fdb/flush": {"flushed": 3},
    "port/add": {"message": "port vm1 added"},
    "port/del": {"message": "port vm1 deleted"},
    "port/set": {"message": "port vm1 updated"},
    "reload": {"message": "configuration generation 2 applied"},
    "workers": WORKERS,
    "stats": STATS,
    "rebalance": {"message": "rx queues rebalanced"},
}


class DaemonThread:
    """A ControlServer on its own uvloop event loop, recording what it was asked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, str] = {}  # command -> VswitchError message to raise
        self.server = ControlServer(path)
        for name, result in RESULTS.items():
            self.server.register(name, self._recorder(name, result), "", f"help for {name}")
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="control-test")

    def _recorder(self, name: str, result: Any) -> Any:
        def handler(args: dict[str, Any]) -> Any:
            self.calls.append((name, args))
            if name in self.failures:
                raise VswitchError(self.failures[name])
            return result
        return handler

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="vsw-", dir="/tmp")  # AF_UNIX paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonThread]:
    d = DaemonThread(os.path.join(sock_dir, "vswitchd.sock"))
    d.start()
    monkeypatch.setenv("VSWITCHD_SOCKET", d.path)
    yield d
    d.stop()


@pytest.mark.parametrize(
    ("argv", "command", "args"),
    [
        (["show"], "show", {}),
        (["fdb", "show"], "fdb/show", {"vlan": None, "port": None}),
        (["fdb", "show", "--vlan", "10", "--port", "vm0"], "fdb/show", {"vlan": 10, "port": "vm0"}),
        (["fdb", "flush"], "fdb/flush", {"vlan": None, "port": None}),
        (["fdb", "flush", "--vlan", "4094"], "fdb/flush", {"vlan": 4094, "port": None}),
        (["port", "add", "vm1", "type=tap", "vlan=20"], "port/add",
         {"name": "vm1", "pairs": ["type=tap", "vlan=20"]}),
        (["port", "add", "vm1"], "port/add", {"name": "vm1", "pairs": []}),
        (["port", "del", "vm1"], "port/del", {"name": "vm1"}),
        (["port", "set", "vm1", "vlans=1-10,20"], "port/set",
         {"name": "vm1", "pairs": ["vlans=1-10,20"]}),
        (["reload"], "reload", {}),
        (["workers"], "workers", {}),
        (["stats"], "stats", {"port": None}),
        (["stats", "--port", "uplink"], "stats", {"port": "uplink"}),
        (["rebalance"], "rebalance", {}),
        (["list-commands"], "list-commands", {}),
    ],
)
def test_each_subcommand_sends_its_command_and_args(
    daemon: DaemonThread, argv: list[str], command: str, args: dict[str, Any]
) -> None:
    assert cli.main(argv) == 0
    if command != "list-commands":  # built in, not recorded
        assert daemon.calls == [(command, args)]


@pytest.mark.parametrize(
    "argv",
    [["--json", "fdb", "show"], ["fdb", "show", "--json"],
     ["fdb", "show", "--vlan", "10", "--json"], ["--json", "fdb", "show", "--json"]],
)
def test_json_flag_accepted_before_and_after_subcommand(
    daemon: DaemonThread, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == json.dumps(FDB, indent=2, sort_keys=True) + "\n"


def test_json_flag_before_subcommand_survives_subcommand_defaults(
    daemon: DaemonThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--json", "show"]) == 0
    assert json.loads(capsys.readouterr().out) == SHOW


def test_socket_option_after_subcommand_overrides_environment(
    daemon: DaemonThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSWITCHD_SOCKET", "/nonexistent/vswitchd.sock")
    assert cli.main(["reload", "--socket", daemon.path]) == 0
    assert daemon.calls == [("reload", {})]


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["show"], SHOW_TEXT),
        (["fdb", "show"], FDB_TEXT),
        (["fdb", "flush"], "flushed 3 entries"),
        (["port", "del", "vm1"], "port vm1 deleted"),
        (["reload"], "configuration generation 2 applied"),
        (["workers"], WORKERS_TEXT),
        (["stats"], STATS_TEXT),
        (["rebalance"], "rx queues rebalanced"),
    ],
)
def test_text_output_of_each_command(
    daemon: DaemonThread, argv: list[str], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == text + "\n"


def test_daemon_error_reply_exits_1_with_its_message(
    daemon: DaemonThread, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.failures["port/del"] = "port vm9: no such port"
    assert cli.main(["port", "del", "vm9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "vswitchctl: port vm9: no such port\n"


def test_missing_socket_exits_1_and_asks_if_daemon_runs(
    sock_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(sock_dir, "absent.sock")
    assert cli.main(["--socket", path, "show"]) == 1
    assert capsys.readouterr().err == (
        f"vswitchctl: cannot connect to {path}: no such file (is vswitchd running?)\n")


def test_connection_refused_exits_1_and_asks_if_daemon_runs(
    sock_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(sock_dir, "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # the file stays, nobody listens
    assert cli.main(["--socket", path, "show"]) == 1
    assert capsys.readouterr().err == (
        f"vswitchctl: cannot connect to {path}: connection refused (is vswitchd running?)\n")


def test_permission_denied_exits_1_and_mentions_the_group(
    daemon: DaemonThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chmod(daemon.path, 0o000)
    if os.geteuid() == 0:  # root ignores file modes; make connect() answer as for a user

        def denied(self: socket.socket, address: Any) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(socket.socket, "connect", denied)
    assert cli.main(["show"]) == 1
    assert capsys.readouterr().err == (f"vswitchctl: cannot connect to {daemon.path}: "
                                       "permission denied (are you in the socket's group?)\n")


def test_daemon_that_never_replies_times_out_with_clear_message(
    sock_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(sock_dir, "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(path)
        mute.listen()  # connect() succeeds through the backlog; nobody ever answers
        assert cli.main(["--socket", path, "--timeout", "0.2", "show"]) == 1
    assert capsys.readouterr().err == (
        f"vswitchctl: no reply from vswitchd on {path} within 0.2 s\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fdb", "show", "--vlan", "0"], "argument --vlan: VLAN must be an integer 1..4094"),
        (["fdb", "flush", "--vlan", "4095"], "argument --vlan: VLAN must be an integer 1..4094"),
        (["fdb", "show", "--vlan", "ten"], "argument --vlan: VLAN must be an integer 1..4094"),
        (["port", "add", "vm1", "tap"], "argument key=value: expected key=value, got 'tap'"),
        (["port", "set", "vm1"], "the following arguments are required: key=value"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["--timeout", "-1", "show"], "argument --timeout: timeout must be seconds >= 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line_message_and_send_nothing(
    daemon: DaemonThread, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vswitchctl")
    error_lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert daemon.calls == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fdb", "show", "--help"]) == 0
    assert "--vlan N" in capsys.readouterr().out


def test_list_commands_text_lists_daemon_commands(
    daemon: DaemonThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["list-commands"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["COMMAND", "USAGE", "HELP"]
    assert any(line.startswith("fdb/show ") and "help for fdb/show" in line for line in lines)


# Golden text of the pure formatters.


def test_format_show_golden() -> None:
    assert cli.format_show(SHOW) == SHOW_TEXT


def test_format_show_adds_one_line_per_port_whose_rx_ring_has_counters() -> None:
    lines = cli.format_show(SHOW).splitlines()
    ring_lines = [line for line in lines if line.startswith("rx ring ")]
    # The TAP, the daemon too old to say, and the port that fell back to
    # recvmmsg ("off") get none; the ring's counters lead with what an
    # operator checks first, frames and the kernel's drops.
    assert ring_lines == [lines[-1]] and ring_lines[0].startswith(
        "rx ring uplink (v3): frames 123456, blocks 70, kernel_packets 123500, kernel_drops 44")


def test_format_show_prints_a_ring_counter_it_does_not_know_last() -> None:
    port = {**SHOW["ports"][1], "rx_ring_stats": {"frames": 1, "zz_new": 2, "blocks": 1}}
    text = cli.format_show({"switch": SHOW["switch"], "ports": [port]})
    assert text.splitlines()[-1] == "rx ring uplink (v3): frames 1, blocks 1, zz_new 2"


def test_format_show_names_who_attached_each_runtime_port_last() -> None:
    port = {**SHOW["ports"][0], "name": "vnet7", "attached_by": "rule vms"}
    text = cli.format_show({"switch": SHOW["switch"], "ports": [*SHOW["ports"], port]})
    assert text.splitlines()[-1] == 'port vnet7: attached_by = "rule vms"'
    assert text.count("attached_by") == 1     # ports from the config file: none


def test_format_show_without_ports() -> None:
    assert cli.format_show({"switch": SHOW["switch"], "ports": []}).splitlines()[1] == "no ports"


def test_format_fdb_sorts_by_vlan_then_mac_like_ovs_appctl() -> None:
    assert cli.format_fdb(FDB) == FDB_TEXT


def test_format_fdb_empty_table_keeps_ovs_header() -> None:
    assert cli.format_fdb([]) == " port  VLAN  MAC                Age"


def test_format_workers_golden() -> None:
    assert cli.format_workers(WORKERS) == WORKERS_TEXT


def test_format_stats_golden() -> None:
    assert cli.format_stats(STATS) == STATS_TEXT


def test_format_commands_golden() -> None:
    assert cli.format_commands(COMMANDS) == COMMANDS_TEXT


@pytest.mark.parametrize(
    ("vlans", "text"),
    [([], ""), ([5], "5"), ([3, 1, 2, 5], "1-3,5"), ([1, 2, 4, 5, 4094], "1-2,4-5,4094")],
)
def test_format_vlan_ranges_compresses_runs(vlans: list[int], text: str) -> None:
    assert cli.format_vlan_ranges(vlans) == text


@pytest.mark.parametrize(
    ("command", "result"),
    [("show", [1, 2]), ("fdb/show", {"a": 1}), ("workers", [{"worker": 0}]),
     ("stats", "odd"), ("fdb/flush", {"flushed": "many"}), ("new/command", {"x": [1]})],
)
def test_unexpected_result_shape_falls_back_to_pretty_json(command: str, result: Any) -> None:
    assert cli.format_result(command, result) == json.dumps(result, indent=2, sort_keys=True)


def test_message_result_of_unknown_command_prints_the_message() -> None:
    assert cli.format_result("new/command", {"message": "done"}) == "done"
    assert cli.format_result("new/command", None) == ""


def test_acl_show_lists_rules_in_evaluation_order_then_the_defaults():
    from vswitchd.acl_format import format_acl_show
    result = [{
        "port": "vm1", "sessions": 2, "max_bandwidth_out": "500Mbit", "max_bandwidth_in": None,
        "max_burst": 625000,
        "default": {"action": "allow", "in": {"packets": 0, "bytes": 0},
                    "out": {"packets": 5, "bytes": 300}},
        "rules": [
            {"acl": "web", "rule": "ssh-in", "weight": 200, "direction": "in",
             "action": "allow", "stateful": False,
             "match": "remote_ip=10.0.0.0/8 protocol=tcp local_port=22",
             "packets": 12, "bytes": 1480},
            {"acl": "web", "rule": "out-tcp", "weight": 100, "direction": "out",
             "action": "allow", "stateful": True, "match": "protocol=tcp",
             "packets": 3, "bytes": 222},
        ]}]
    assert format_acl_show(result) == """\
port vm1: default allow, 2 sessions, max_bandwidth_out 500Mbit, max_burst 625000
  WEIGHT  RULE         DIR  ACTION          MATCH                                            PACKETS  BYTES
  200     web.ssh-in   in   allow           remote_ip=10.0.0.0/8 protocol=tcp local_port=22  12       1480
  100     web.out-tcp  out  allow stateful  protocol=tcp                                     3        222
  -       (default)    in   allow           no rule matched                                  0        0
  -       (default)    out  allow           no rule matched                                  5        300"""  # noqa: E501


def test_acl_commands_parse_their_port_filter():
    parser = cli.build_parser()
    for sub in ("show", "sessions", "flush"):
        ns = parser.parse_args(["acl", sub, "--port", "vm1"])
        assert (ns.command, ns.build_args(ns)) == (f"acl/{sub}", {"port": "vm1"})
    assert cli.format_result("acl/flush", {"flushed": 3}) == "flushed 3 sessions"
