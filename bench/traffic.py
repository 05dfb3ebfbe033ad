"""Traffic and measurement: iperf3 TCP, ping RTT, 64-byte frame blast, CPU time.

All traffic flows between namespaces the benchmark created (`Host`s).
Every tool runs with a timeout and is reaped; a failing measurement returns
its error text instead of raising, so one broken configuration still leaves a
row (with the failure) in the table.

64-byte test: trafgen (netsniff-ng) in the sender's namespace sends one fixed
60-byte UDP frame (64 on the wire with the FCS) at full speed to the
receiver's MAC, for an IP nobody owns (so the receiver drops it in IP without
answering, and never sends anything back).  After a warm-up we sample, over
the same window, the receiver interface's rx_packets and the switch
process's utime+stime (/proc/PID/stat: the whole thread group, i.e. summed
over threads, exited threads included).  For TAP ports the receiving
namespace's stack runs inside the switch's write(), so that kernel time is
counted as switch time: true for vswitchd and Open vSwitch alike.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proc import BenchError, Managed, in_netns, run, wait_until
from topology import SUBNET, Host

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOBODY_IP = f"{SUBNET}.250"  # on the subnet, owned by no host
IPERF_BASE_PORT = 5201


@dataclass
class TcpResult:
    gbps: float | None = None
    per_pair_gbps: list[float | None] = field(default_factory=list)
    retransmits: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class PingResult:
    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    loss_pct: float | None = None
    error: str | None = None


@dataclass
class BlastResult:
    kpps: float | None = None              # frames received by the destination per ms
    offered_kpps: float | None = None      # frames the sender's interface sent or dropped
    frames: int | None = None
    switch_cpu_s: float | None = None
    switch_cpu_pct: float | None = None    # of one core
    us_per_frame: float | None = None
    window_s: float | None = None
    error: str | None = None


def as_dict(obj: TcpResult | PingResult | BlastResult) -> dict[str, Any]:
    return asdict(obj)


# CPU time.


def cpu_seconds(pid: int) -> float:
    """utime+stime of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_cpu_jiffies() -> list[int]:
    """The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq
    softirq steal ... in clock ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_pct(before: list[int], after: list[int]) -> float | None:
    """Share of all CPU time the hypervisor took away between two samples."""
    delta = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(delta[:8])
    return 100 * delta[7] / total if total > 0 else None


def iface_counters(host: Host, *names: str) -> list[int]:
    """The interface statistics `names` (e.g. rx_packets) of `host`'s interface."""
    paths = [f"/sys/class/net/{host.ifname}/statistics/{n}" for n in names]
    return [int(x) for x in run(in_netns(host.ns, "cat", *paths), 10).stdout.split()]


# Ping.

_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/")
_LOSS = re.compile(r"([\d.]+)% packet loss")


def ping(src: Host, dst: Host, count: int = 50, interval_s: float = 0.01) -> PingResult:
    res = run(in_netns(src.ns, "ping", "-q", "-c", str(count), "-i", str(interval_s),
                       "-W", "1", dst.ip), timeout_s=count * interval_s + 15, check=False)
    out = PingResult()
    loss = _LOSS.search(res.stdout)
    out.loss_pct = float(loss.group(1)) if loss else None
    rtt = _RTT.search(res.stdout)
    if rtt:
        out.min_ms, out.avg_ms, out.max_ms = (float(rtt.group(i)) for i in (1, 2, 3))
    else:
        out.error = f"no RTT (exit {res.returncode}): {res.stdout.strip()[-200:]}"
    return out


def warm_up(pairs: list[tuple[Host, Host]]) -> list[str]:
    """A few pings per pair so ARP is resolved and every switch has learned both MACs."""
    errors = []
    for src, dst in pairs:
        r = ping(src, dst, count=3, interval_s=0.05)
        if r.loss_pct is None or r.loss_pct >= 100:
            errors.append(f"warm-up ping {src.ns} -> {dst.ip} failed: {r.error or 'loss'}")
    return errors


# TCP.


def _listening(ns: str, port: int) -> bool:
    res = run(in_netns(ns, "ss", "-Hltn", f"sport = :{port}"), 10, check=False)
    return bool(res.stdout.strip())


def tcp(pairs: list[tuple[Host, Host]], streams: int, duration_s: int,
        workdir: Path) -> TcpResult:
    """iperf3 on every (client, server) pair at once; total receiver-side Gbit/s."""
    result = TcpResult()
    servers: list[Managed] = []
    clients: list[subprocess.Popen[str]] = []
    try:
        for i, (_, dst) in enumerate(pairs):
            port = IPERF_BASE_PORT + i
            servers.append(Managed(f"iperf3-server-{i}", in_netns(
                dst.ns, "iperf3", "-s", "-1", "-p", str(port)),
                log_path=workdir / f"iperf3-server-{i}.log"))
            wait_until(functools.partial(_listening, dst.ns, port), 10,
                       what=f"iperf3 server in {dst.ns}")
        for i, (src, dst) in enumerate(pairs):
            clients.append(subprocess.Popen(in_netns(
                src.ns, "iperf3", "-c", dst.ip, "-p", str(IPERF_BASE_PORT + i),
                "-t", str(duration_s), "-P", str(streams), "-J", "--connect-timeout", "3000"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + duration_s + 25
        total, retrans = 0.0, 0
        for i, client in enumerate(clients):
            try:
                stdout, stderr = client.communicate(
                    timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                client.kill()
                client.communicate(timeout=10)
                result.errors.append(f"pair {i}: iperf3 client still running after "
                                     f"{duration_s + 25} s (TCP stalled?)")
                result.per_pair_gbps.append(None)
                continue
            gbps, rt, err = _parse_iperf(stdout, stderr)
            result.per_pair_gbps.append(gbps)
            if err:
                result.errors.append(f"pair {i}: {err}")
            total += gbps or 0.0
            retrans += rt or 0
        if any(g is not None for g in result.per_pair_gbps):
            result.gbps = total
            result.retransmits = retrans
    except BenchError as e:
        result.errors.append(str(e))
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait(timeout=10)
        for s in servers:
            s.stop(grace_s=5)
    return result


def _parse_iperf(stdout: str, stderr: str) -> tuple[float | None, int | None, str | None]:
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        return None, None, f"no JSON from iperf3: {(stderr or stdout).strip()[-200:]}"
    end = doc.get("end", {})
    recv = end.get("sum_received", {}).get("bits_per_second")
    rt = end.get("sum_sent", {}).get("retransmits")
    err = doc.get("error")
    if recv is None:
        return None, None, err or "iperf3 reported no received throughput"
    return recv / 1e9, rt, err


# 64-byte frames.


def trafgen_config(src: Host, dst: Host) -> str:
    """One 60-byte UDP/IPv4 frame (64 with FCS) from `src` to `dst`'s MAC."""
    return (f"{{ eth(da={dst.mac}, sa={src.mac}), "
            f"ipv4(saddr={src.ip}, daddr={NOBODY_IP}, ttl=64), "
            f"udp(sp=9, dp=9), fill(0, 18) }}\n")


def blast64(src: Host, dst: Host, duration_s: float, switch_pids: list[int],
            workdir: Path, warmup_s: float = 0.7) -> BlastResult:
    """trafgen at full rate from `src` to `dst`; forwarded kpps and switch CPU
    per frame, summed over `switch_pids` (none: an in-kernel switch)."""
    out = BlastResult()
    cfg = workdir / "trafgen.cfg"
    cfg.write_text(trafgen_config(src, dst))
    # Only in our own namespace: the receiver must not route the blast anywhere.
    run(in_netns(dst.ns, "sysctl", "-qw", "net.ipv4.ip_forward=0"), 10, check=False)
    gen = Managed("trafgen", in_netns(src.ns, "trafgen", "-o", src.ifname, "-i", str(cfg),
                                      "-P", "1", "--no-sock-mem", "--notouch-irq"),
                  log_path=workdir / "trafgen.log")
    try:
        time.sleep(warmup_s)
        if not gen.alive():
            out.error = f"trafgen exited early: {gen.log_tail(5)}"
            return out
        rx0, = iface_counters(dst, "rx_packets")
        tx0 = sum(iface_counters(src, "tx_packets", "tx_dropped"))
        cpu0 = sum(map(cpu_seconds, switch_pids)) if switch_pids else None
        t0 = time.monotonic()
        time.sleep(duration_s)
        rx1, = iface_counters(dst, "rx_packets")
        tx1 = sum(iface_counters(src, "tx_packets", "tx_dropped"))
        cpu1 = sum(map(cpu_seconds, switch_pids)) if switch_pids else None
        t1 = time.monotonic()
    except (BenchError, OSError) as e:
        out.error = str(e)
        return out
    finally:
        gen.stop(grace_s=5, sig=signal.SIGINT)
    window = t1 - t0
    out.window_s = round(window, 3)
    out.frames = rx1 - rx0
    out.kpps = out.frames / window / 1e3
    out.offered_kpps = (tx1 - tx0) / window / 1e3
    if cpu0 is not None and cpu1 is not None:
        out.switch_cpu_s = cpu1 - cpu0
        out.switch_cpu_pct = 100 * out.switch_cpu_s / window
        if out.frames > 0:
            out.us_per_frame = out.switch_cpu_s * 1e6 / out.frames
    if out.frames == 0:
        out.error = "no 64-byte frames reached the receiver"
    return out
