#!/usr/bin/env python3
"""Before/after benchmark of a netdev (AF_PACKET) port: rx ring vs recvmmsg.

Topology (names vsio-<tag>-*, removed by exact name at the end):
  ns T: TAP port "t" of the switch (10.198.0.1)
  ns V: veth end; the host end is netdev port "v" of the switch (10.198.0.2)
One worker thread.  Runs: ping (latency), iperf3 TCP 1 stream V->T and
T->V, trafgen 64-byte frames V->T.  For each, the daemon's CPU
(utime+stime from /proc/PID/stat) over the run divided by the frames it
forwarded (tx_packets of the egress port).

  sudo .venv/bin/python bench/io_options/netdev_bench.py --ring 1 --secs 5
  sudo .venv/bin/python bench/io_options/netdev_bench.py --ring 0 --secs 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.daemon_fixture import RunningDaemon  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def sh(*a: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(a, check=check, capture_output=True, text=True, timeout=timeout)


def ns_sh(ns: str, *a: str, **kw) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *a, **kw)


def cpu_s(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK


def counters(d: RunningDaemon, port: str) -> dict:
    return d.port(port)


def stats_drops(d: RunningDaemon) -> dict:
    out = {}
    for p in d.ctl("show")["ports"]:
        out[p["name"]] = p.get("drops_by_reason", {})
    return out


def measured(d: RunningDaemon, egress: str, fn) -> tuple[float, int, object]:
    pid = d.proc.pid
    c0, t0 = cpu_s(pid), counters(d, egress)["tx_packets"]
    w0 = time.monotonic()
    res = fn()
    wall = time.monotonic() - w0
    c1, t1 = cpu_s(pid), counters(d, egress)["tx_packets"]
    return c1 - c0, t1 - t0, (res, wall)


def trafgen_conf(path: Path, dst: str, src: str) -> None:
    mac = lambda m: ", ".join("0x" + x for x in m.split(":"))  # noqa: E731
    # 64-byte frame incl. FCS -> 60 bytes: Ethernet + IPv4 + UDP + payload.
    path.write_text("{\n  " + mac(dst) + ",\n  " + mac(src) + ",\n  0x08, 0x00,\n"
                    "  0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,"
                    " csumip(14, 33),\n  10, 198, 0, 2,  10, 198, 0, 1,\n"
                    "  0x04, 0xd2, 0x16, 0x2e, 0x00, 0x1a, 0x00, 0x00,\n"
                    "  fill(0x41, 18),\n}\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ring", default="1")
    ap.add_argument("--tov", default="0")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    os.environ["VSWITCHD_PACKET_RING"] = args.ring
    os.environ["VSWITCHD_PACKET_RING_TOV_MS"] = args.tov
    tag = secrets.token_hex(2)
    ns_t, ns_v = f"vsio-{tag}-t", f"vsio-{tag}-v"
    veth_h, veth_n = f"vsio{tag}h", f"vsio{tag}n"
    tap_if = f"vsio{tag}t"
    results: dict = {"ring": args.ring, "tov_ms": args.tov, "date": sh("date", "-u").stdout.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="vsio-"))
    d = None
    server = None
    try:
        sh("ip", "netns", "add", ns_t)
        sh("ip", "netns", "add", ns_v)
        sh("ip", "link", "add", veth_h, "type", "veth", "peer", "name", veth_n, "netns", ns_v)
        sh("ip", "link", "set", veth_h, "up")
        ns_sh(ns_v, "ip", "link", "set", veth_n, "up")
        d = RunningDaemon(tmp, {"t": {"type": "tap", "ifname": tap_if, "netns": ns_t},
                                "v": {"type": "netdev", "ifname": veth_h}},
                          switch={"workers": 1})
        d.start()
        d.wait_ports_up("t", "v")
        ns_sh(ns_t, "ip", "addr", "add", "10.198.0.1/24", "dev", tap_if)
        ns_sh(ns_t, "ip", "link", "set", tap_if, "up")
        ns_sh(ns_v, "ip", "addr", "add", "10.198.0.2/24", "dev", veth_n)
        ns_sh(ns_v, "ip", "link", "set", veth_n, "up")
        ns_sh(ns_v, "ping", "-c", "3", "-i", "0.2", "10.198.0.1", check=False)
        mac_t = json.loads(ns_sh(ns_t, "ip", "-j", "link", "show", tap_if).stdout)[0]["address"]
        mac_v = json.loads(ns_sh(ns_v, "ip", "-j", "link", "show", veth_n).stdout)[0]["address"]

        if "ping" not in args.skip:
            r = ns_sh(ns_v, "ping", "-c", "300", "-i", "0.01", "10.198.0.1", check=False)
            rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout))
            if rtts:
                q = lambda f: rtts[min(len(rtts) - 1, int(f * len(rtts)))]  # noqa: E731
                results["ping_ms"] = {"min": rtts[0], "p50": q(0.5), "p90": q(0.9),
                                      "p99": q(0.99), "n": len(rtts)}

        for direction, cli_ns, srv_ns, dst, egress in (
                ("v_to_t", ns_v, ns_t, "10.198.0.1", "t"),
                ("t_to_v", ns_t, ns_v, "10.198.0.2", "v")):
            if "iperf" in args.skip:
                break
            server = subprocess.Popen(["ip", "netns", "exec", srv_ns, "iperf3", "-s", "-1",
                                       "-p", "5301"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            cpu, frames, (r, wall) = measured(d, egress, lambda ns=cli_ns, ip=dst: ns_sh(
                ns, "iperf3", "-c", ip, "-p", "5301", "-t", str(args.secs), "-J",
                check=False, timeout=args.secs + 30))
            server.wait(10)
            server = None
            try:
                j = json.loads(r.stdout)
                gbps = j["end"]["sum_received"]["bits_per_second"] / 1e9
            except Exception:
                gbps = None
            results[f"iperf_{direction}"] = {
                "gbit_s": round(gbps, 2) if gbps else r.stdout[-300:],
                "daemon_cpu_pct": round(100 * cpu / wall, 1),
                "frames": frames, "us_cpu_per_frame": round(1e6 * cpu / max(frames, 1), 2)}

        if "trafgen" not in args.skip:
            conf = tmp / "udp64.cfg"
            trafgen_conf(conf, mac_t, mac_v)
            rx0 = counters(d, "v")["rx_packets"]
            cpu, frames, (r, wall) = measured(d, "t", lambda: ns_sh(
                ns_v, "timeout", "-s", "INT", str(args.secs), "trafgen", "--dev", veth_n,
                "--conf", str(conf), "--cpus", "1", "-q", check=False,
                timeout=args.secs + 20))
            time.sleep(0.3)
            rx1 = counters(d, "v")["rx_packets"]
            results["workers_after_trafgen"] = d.ctl("workers")
            results["trafgen_64B_v_to_t"] = {
                "kpps_forwarded": round(frames / wall / 1e3, 1),
                "switch_rx_kpps": round((rx1 - rx0) / wall / 1e3, 1),
                "daemon_cpu_pct": round(100 * cpu / wall, 1),
                "frames": frames, "us_cpu_per_frame": round(1e6 * cpu / max(frames, 1), 2)}
        results["drops"] = stats_drops(d)
        results["port_v"] = {k: v for k, v in counters(d, "v").items()
                             if isinstance(v, int)}
        maps = open(f"/proc/{d.proc.pid}/maps").read()
        results["ring_mappings"] = sum(1 for line in maps.splitlines() if "socket:" in line)
    finally:
        if server is not None:
            server.kill()
        if d is not None:
            d.stop()
        sh("ip", "link", "del", veth_h, check=False)
        sh("ip", "netns", "del", ns_v, check=False)
        sh("ip", "netns", "del", ns_t, check=False)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
