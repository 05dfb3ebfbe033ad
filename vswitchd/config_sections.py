"""The [switch], [management] and [metrics] sections: their frozen values
and their checks (vswitchd/config.py composes them with the ports, ACL
sets, mirrors and [evpn] into a Config).  Pure, like the rest of the config."""

from __future__ import annotations

from dataclasses import dataclass

from vswitchd.config_values import (
    check_keys,
    cpu_list,
    get_key,
    group_name,
    int_in,
    listen_address,
    octal_mode,
    one_of,
    socket_file,
    split_listen,
)

RXQ_ASSIGN = ("roundrobin", "cycles")
SWITCH_KEYS = ("workers", "cpus", "mac_aging_s", "mac_table_size", "rxq_assign",
               "rebalance_interval_s", "rebalance_load_threshold", "rebalance_improvement",
               "rebalance_sample_s", "busy_poll_us", "acl_sessions")
MANAGEMENT_KEYS = ("socket", "socket_mode", "socket_group")
METRICS_KEYS = ("listen",)


@dataclass(frozen=True)
class SwitchConfig:
    workers: int = 0                    # 0: one per online CPU
    cpus: tuple[int, ...] | None = None  # None: all online CPUs
    mac_aging_s: int = 300
    mac_table_size: int = 8192
    rxq_assign: str = "roundrobin"
    # Automatic rx queue rebalancing, in the spirit of Open vSwitch's
    # pmd-auto-lb: a worker busier than load_threshold % for a whole
    # interval, while another has room, triggers a reassignment if it would
    # lower the busiest worker's load by at least improvement %.
    rebalance_interval_s: int = 60      # 0: never automatically
    rebalance_load_threshold: int = 95
    rebalance_improvement: int = 25
    rebalance_sample_s: int = 10
    # Workers keep polling this long after their last frame before they
    # sleep.  Off by default: on hosts where the VMs share the workers'
    # cores the spinning takes CPU from them (TCP -11..-19 % on 2 vCPUs,
    # docs/performance.md); worth trying on dedicated cores.  0: never.
    busy_poll_us: int = 0
    # Stateful ACL sessions the switch can hold (csrc/vs_acl_sessions.h).
    acl_sessions: int = 262144


@dataclass(frozen=True)
class ManagementConfig:
    socket: str = "/run/vswitchd/vswitchd.sock"
    socket_mode: int = 0o660
    socket_group: str | None = None     # None: leave the group alone


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9477"      # "" disables the exporter

    @property
    def enabled(self) -> bool:
        return self.listen != ""

    @property
    def host(self) -> str | None:
        """The address to bind, IPv6 without brackets; None when disabled."""
        return split_listen(self.listen)[0] if self.enabled else None

    @property
    def port(self) -> int | None:
        return split_listen(self.listen)[1] if self.enabled else None


def parse_switch(data: object) -> SwitchConfig:
    t = check_keys(data, "switch", SWITCH_KEYS)
    return SwitchConfig(
        workers=get_key(t, "switch", "workers", 0, int_in(0, 64)),
        cpus=get_key(t, "switch", "cpus", None, cpu_list),
        mac_aging_s=get_key(t, "switch", "mac_aging_s", 300, int_in(1, 1_000_000)),
        mac_table_size=get_key(t, "switch", "mac_table_size", 8192, int_in(16, 1_048_576)),
        rxq_assign=get_key(t, "switch", "rxq_assign", "roundrobin", one_of(RXQ_ASSIGN)),
        rebalance_interval_s=get_key(t, "switch", "rebalance_interval_s", 60,
                                  int_in(0, 86_400)),
        rebalance_load_threshold=get_key(t, "switch", "rebalance_load_threshold", 95,
                                      int_in(1, 100)),
        rebalance_improvement=get_key(t, "switch", "rebalance_improvement", 25, int_in(1, 100)),
        rebalance_sample_s=get_key(t, "switch", "rebalance_sample_s", 10, int_in(1, 3600)),
        busy_poll_us=get_key(t, "switch", "busy_poll_us", 0, int_in(0, 100_000)),
        acl_sessions=get_key(t, "switch", "acl_sessions", 262144, int_in(16, 16_777_216)),
    )


def parse_management(data: object) -> ManagementConfig:
    t = check_keys(data, "management", MANAGEMENT_KEYS)
    return ManagementConfig(
        socket=get_key(t, "management", "socket", ManagementConfig.socket, socket_file),
        socket_mode=get_key(t, "management", "socket_mode", 0o660, octal_mode),
        socket_group=get_key(t, "management", "socket_group", None, group_name),
    )


def parse_metrics(data: object) -> MetricsConfig:
    t = check_keys(data, "metrics", METRICS_KEYS)
    return MetricsConfig(
        listen=get_key(t, "metrics", "listen", MetricsConfig.listen, listen_address))
