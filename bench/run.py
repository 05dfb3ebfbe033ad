"""vswitchd benchmark: vswitchd vs Open vSwitch (userspace) vs the Linux bridge.

    python bench/run.py [--quick] [--only NAME,...] [--runs N] [--json FILE]

Every configuration (see scenarios.CONFIGS, `--list`) is set up from scratch,
measured and torn down; with `--runs N` the configurations are interleaved
(run 1 of every row, then run 2, ...) so slow drift on the host hits every row
alike, and the table shows the median of each metric.  Per configuration:
ping RTT, iperf3 TCP with 1 and 4 streams (A -> B), and 64-byte frames from
trafgen (forwarded kpps and switch CPU us per frame); 4-namespace rows run
two single-stream iperf3 pairs at once (A -> B and C -> D) instead.

Policy rows (issue 10): the same ACL (bench/policy.py) on the sender's port
in vswitchd (`vsw-tap-acl*`), as nftables rules on the Linux bridge
(`bridge-nft*`) and as OpenFlow flows, with conntrack for the stateful
variant, on Open vSwitch (`ovs-tap-tso-acl*`, `ovs-tap-tso-ct*`); the
summary prints the policy targets and what the policy costs each switch.

VXLAN rows (issue 9, bench/overlay.py): two namespace-hosts over a veth
underlay, each with its own switch and VTEP -- vswitchd (`vxlan-vsw`), the
kernel's vxlan device + Linux bridge (`vxlan-kernel`, the reference) and
Open vSwitch's userspace datapath with a vxlan tunnel port (`vxlan-ovs`);
their us/frame is the CPU of both hosts' switches per delivered frame.

vhost-user rows (issue 12, bench/vhost_bench.py): 64-byte frames circulating
between two vhost-user ports, driven by one dpdk-testpmd, through testpmd
itself (the ceiling), Open vSwitch-DPDK and vswitchd: forwarded Mpps and
switch CPU ns per frame, with ratios.

Needs root, iperf3, ping, trafgen (netsniff-ng), for the ovs-* rows
openvswitch-switch and for the bridge-nft* rows nft (nftables); missing
Debian packages are installed with apt-get (without starting any service).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ovs
import scenarios
import traffic
import vhost_bench
import vswitchd_runner
from proc import BenchError, run
from scenarios import BY_NAME, CONFIGS, Config

TOOLS = {"iperf3": "iperf3", "trafgen": "netsniff-ng", "ping": "iputils-ping",
         "ss": "iproute2"}
POLICY_RC = Path("/usr/sbin/policy-rc.d")


@dataclass
class Sample:
    """One measurement of one configuration (one run)."""

    config: str
    run: int
    ping: dict[str, Any] = field(default_factory=dict)
    tcp1: dict[str, Any] = field(default_factory=dict)
    tcp4: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    blast64: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    switch_log_tail: str = ""
    seconds: float = 0.0
    steal_pct: float | None = None     # hypervisor steal during this sample
    policy: dict[str, Any] = field(default_factory=dict)   # policy rows: loaded, counters


# Tools.


def ensure_tools(need_ovs: bool, need_nft: bool = False) -> list[str]:
    """apt-get install what is missing; returns the names still missing."""
    pkgs = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if need_ovs and not ovs.available():
        pkgs.append("openvswitch-switch")
    if need_nft and not shutil.which("nft"):
        pkgs.append("nftables")
    if pkgs:
        print(f"bench: installing {' '.join(pkgs)}", flush=True)
        # Never let the package start the system's Open vSwitch service.
        made_policy = not POLICY_RC.exists()
        if made_policy:
            POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
            POLICY_RC.chmod(0o755)
        try:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            if run(["apt-get", "install", "-y", "-qq", *pkgs], 600, check=False,
                   env=env).returncode != 0:
                run(["apt-get", "update", "-qq"], 600, check=False, env=env)
                run(["apt-get", "install", "-y", "-qq", *pkgs], 600, check=False, env=env)
        finally:
            if made_policy:
                POLICY_RC.unlink()
    missing = [t for t in TOOLS if not shutil.which(t)]
    if need_ovs and not ovs.available():
        missing.append("ovs-vswitchd")
    if need_nft and not shutil.which("nft"):
        missing.append("nft")
    return missing


# Measuring one configuration.


def measure(cfg: Config, run_no: int, args: argparse.Namespace, workdir: Path,
            code_dir: Path) -> Sample:
    sample = Sample(cfg.name, run_no)
    t0 = time.monotonic()
    cpu0 = traffic.host_cpu_jiffies()
    print(f"bench: run {run_no} {cfg.name} ...", end="", flush=True)
    try:
        with scenarios.build(cfg, workdir, code_dir) as setup:
            pairs = setup.pairs()
            sample.errors += traffic.warm_up(pairs)
            src, dst = pairs[0]
            sample.ping = traffic.as_dict(traffic.ping(src, dst))
            if cfg.hosts == 2:
                sample.tcp1 = traffic.as_dict(traffic.tcp(pairs, 1, args.duration, workdir))
                sample.tcp4 = traffic.as_dict(traffic.tcp(pairs, 4, args.duration, workdir))
                sample.blast64 = traffic.as_dict(traffic.blast64(
                    src, dst, args.blast, setup.cpu_pids(), workdir))
            else:
                sample.pairs = traffic.as_dict(traffic.tcp(pairs, 1, args.duration, workdir))
            if setup.policy_loaded:
                sample.policy["loaded"] = setup.policy_loaded
            if setup.policy_counters:
                try:
                    sample.policy["counters"] = setup.policy_counters()
                except BenchError as e:
                    sample.errors.append(f"policy counters: {e}")
            for part in (sample.tcp1, sample.tcp4, sample.pairs):
                sample.errors += part.get("errors", [])
            for part in (sample.ping, sample.blast64):
                if part.get("error"):
                    sample.errors.append(part["error"])
            if sample.errors and setup.switch_log and setup.switch_log.exists():
                lines = setup.switch_log.read_text(errors="replace").splitlines()
                sample.switch_log_tail = "\n".join(lines[-20:])
    except BenchError as e:
        sample.errors.append(f"setup: {e}")
    except Exception as e:  # keep the other rows: record the bug, go on
        sample.errors.append(f"bench bug: {e!r}\n{traceback.format_exc()}")
    sample.seconds = round(time.monotonic() - t0, 1)
    sample.steal_pct = traffic.steal_pct(cpu0, traffic.host_cpu_jiffies())
    status = f" {len(sample.errors)} error(s)" if sample.errors else ""
    print(f" {sample.seconds:.0f} s{status}", flush=True)
    for err in sample.errors:
        print(f"bench:   {cfg.name}: {err.splitlines()[0]}", flush=True)
    return sample


# Summaries.

Metrics = dict[str, float | None]


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(samples: list[Sample]) -> dict[str, Metrics]:
    """Median of every metric per configuration."""
    out: dict[str, Metrics] = {}
    for name in dict.fromkeys(s.config for s in samples):
        mine = [s for s in samples if s.config == name]
        out[name] = {
            "tcp1": _median([s.tcp1.get("gbps") for s in mine]),
            "tcp4": _median([s.tcp4.get("gbps") for s in mine]),
            "pairs": _median([s.pairs.get("gbps") for s in mine]),
            "kpps": _median([s.blast64.get("kpps") for s in mine]),
            "us": _median([s.blast64.get("us_per_frame") for s in mine]),
            "cpu_pct": _median([s.blast64.get("switch_cpu_pct") for s in mine]),
            "ping": _median([s.ping.get("avg_ms") for s in mine]),
            "steal": _median([s.steal_pct for s in mine]),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


COLUMNS = ("config", "TCP1 Gb/s", "TCP4 Gb/s", "2x1 Gb/s", "64B kpps", "us/frame",
           "cpu %", "ping ms", "TCP1 xOVS", "TCP1 xBR", "TCP4 xOVS", "kpps xOVS",
           "us/f xOVS", "ping xBR", "steal %")


def table(med: dict[str, Metrics]) -> str:
    rows: list[list[str]] = [list(COLUMNS)]
    for name, m in med.items():
        cfg = BY_NAME[name]
        o = med.get(cfg.ovs_match or "", {})
        b = med.get(cfg.bridge_match, {})
        is_bridge = cfg.family == "bridge"
        tcp_col = "pairs" if cfg.hosts == 4 else "tcp1"
        rows.append([
            name, _fmt(m["tcp1"], ".2f"), _fmt(m["tcp4"], ".2f"), _fmt(m["pairs"], ".2f"),
            _fmt(m["kpps"], ".0f"),
            "n/a" if is_bridge else _fmt(m["us"], ".2f"),
            "n/a" if is_bridge else _fmt(m["cpu_pct"], ".0f"),
            _fmt(m["ping"], ".3f"),
            _fmt(_ratio(m["tcp1"], o.get("tcp1")), ".2f"),
            "" if is_bridge else _fmt(_ratio(m[tcp_col], b.get(tcp_col)), ".2f"),
            _fmt(_ratio(m["tcp4"], o.get("tcp4")), ".2f"),
            _fmt(_ratio(m["kpps"], o.get("kpps")), ".2f"),
            _fmt(_ratio(m["us"], o.get("us")), ".2f"),
            "" if is_bridge else _fmt(_ratio(m["ping"], b.get("ping")), ".2f"),
            _fmt(m["steal"], ".0f"),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


ACL1000 = ("vsw-tap-acl1000", "vsw-tap-acl1000-stateful")

# (vswitchd rows, metric, reference row, "min" ratio or "max" ratio, bound, label)
TARGETS: tuple[tuple[tuple[str, ...], str, str, str, float, str], ...] = (
    (("vsw-tap-w1", "vsw-tap-w2"), "tcp1", "ovs-tap-tso", "min", 1.3,
     "TCP1 tap+TSO >= 1.3x OVS tap userspace-TSO"),
    (("vsw-tap-w1", "vsw-tap-w2"), "tcp1", "bridge", "min", 0.8,
     "TCP1 tap+TSO >= 0.8x Linux bridge"),
    (("vsw-netdev-w1", "vsw-netdev-w2"), "tcp1", "ovs-veth-tso", "min", 1.3,
     "TCP1 netdev+TSO >= 1.3x OVS veth TSO"),
    (("vsw-tap-nooff-w1", "vsw-tap-nooff-w2"), "tcp1", "ovs-tap", "min", 2.0,
     "TCP1 offloads off >= 2x OVS tap without TSO"),
    (("vsw-tap-w1", "vsw-tap-w2"), "us", "ovs-tap-tso", "max", 1 / 3,
     "64B us/frame tap <= 1/3 of OVS tap"),
    (("vsw-netdev-w1", "vsw-netdev-w2"), "us", "ovs-veth-tso", "max", 1 / 5,
     "64B us/frame netdev <= 1/5 of OVS veth"),
    (("vsw-tap-w1", "vsw-tap-w2", "vsw-tap-nooff-w1", "vsw-tap-nooff-w2",
      "vsw-netdev-w1", "vsw-netdev-w2"), "ping", "bridge", "max", 2.0,
     "ping <= 2x Linux bridge"),
    # Port policy (issue 10): 1,000 rules against vswitchd without a policy,
    # Open vSwitch with conntrack, and the Linux bridge with nftables.
    (ACL1000, "tcp1", "vsw-tap-w1", "min", 0.95, "ACL 1000 rules TCP1 >= 95% of no-ACL"),
    (ACL1000, "kpps", "vsw-tap-w1", "min", 0.95, "ACL 1000 rules 64B kpps >= 95% of no-ACL"),
    (ACL1000, "tcp1", "ovs-tap-tso-ct1000", "min", 1.5,
     "ACL 1000 rules TCP1 >= 1.5x OVS userspace+conntrack"),
    (ACL1000, "kpps", "ovs-tap-tso-ct1000", "min", 1.5,
     "ACL 1000 rules 64B kpps >= 1.5x OVS userspace+conntrack"),
    (("vsw-tap-acl1000",), "tcp1", "bridge-nft1000", "min", 0.8,
     "ACL 1000 rules TCP1 >= 0.8x bridge+nftables"),
    (("vsw-tap-acl1000",), "kpps", "bridge-nft1000", "min", 0.8,
     "ACL 1000 rules 64B kpps >= 0.8x bridge+nftables"),
    (("vsw-tap-acl1000-stateful",), "tcp1", "bridge-nft1000-stateful", "min", 0.8,
     "ACL 1000 rules TCP1 >= 0.8x bridge+nftables"),
    (("vsw-tap-acl1000-stateful",), "kpps", "bridge-nft1000-stateful", "min", 0.8,
     "ACL 1000 rules 64B kpps >= 0.8x bridge+nftables"),
    # VXLAN between two namespace-hosts (issue 9); us/frame summed over both hosts.
    (("vxlan-vsw",), "tcp1", "vxlan-kernel", "min", 0.8,
     "VXLAN TCP1 >= 0.8x kernel vxlan + bridge"),
    (("vxlan-vsw",), "tcp1", "vxlan-ovs", "min", 1.5,
     "VXLAN TCP1 >= 1.5x OVS userspace VXLAN"),
    (("vxlan-vsw",), "us", "vxlan-ovs", "max", 1.0,
     "VXLAN 64B us/frame < OVS userspace VXLAN"),
)


def targets(med: dict[str, Metrics]) -> list[dict[str, Any]]:
    out = []
    for rows, metric, ref, kind, bound, label in TARGETS:
        for row in rows:
            if row not in med or ref not in med:
                continue
            ratio = _ratio(med[row][metric], med[ref][metric])
            met = None if ratio is None else (ratio >= bound if kind == "min" else ratio <= bound)
            out.append({"target": label, "row": row, "ref": ref, "metric": metric,
                        "value": med[row][metric], "ref_value": med[ref][metric],
                        "ratio": ratio, "bound": bound, "kind": kind, "met": met})
    return out


def format_targets(results: list[dict[str, Any]]) -> str:
    lines = []
    for t in results:
        verdict = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        need = (">=" if t["kind"] == "min" else "<=") + f" {t['bound']:.2f}"
        lines.append(f"{verdict} {t['target']}: {t['row']} {_fmt(t['value'], '.3f')} vs "
                     f"{t['ref']} {_fmt(t['ref_value'], '.3f')} = "
                     f"{_fmt(t['ratio'], '.2f')}x (needs {need})")
    return "\n".join(lines)


# The kernel floor: vswitchd against a bare read/write loop over the same TAPs.

FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("wire-tap", ("vsw-tap-w1", "vsw-tap-w2")),
    ("wire-tap-nooff", ("vsw-tap-nooff-w1", "vsw-tap-nooff-w2")),
    ("wire-veth", ("vsw-netdev-w1", "vsw-netdev-w2")),
)


def format_floors(med: dict[str, Metrics]) -> str:
    """What the wire rows cost against Open vSwitch, and vswitchd against them."""
    def times(a: float | None, b: float | None, what: str) -> str:
        r = _ratio(a, b)
        return f"{r:.2f}x {what}" if r is not None else f"({what}: not measured)"

    wire_s = "the wire's"
    lines = []
    for wire, rows in FLOORS:
        if wire not in med:
            continue
        w = med[wire]
        ref = BY_NAME[wire].ovs_match or ""
        o = med.get(ref, {})
        ovs_s = f"{ref}'s"
        lines.append(f"{wire}: {_fmt(w['us'], '.2f')} us/frame = "
                     f"{times(w['us'], o.get('us'), ovs_s)}, "
                     f"TCP1 {_fmt(w['tcp1'], '.2f')} Gb/s = "
                     f"{times(w['tcp1'], o.get('tcp1'), ovs_s)}")
        for row in rows:
            if row in med:
                m = med[row]
                lines.append(f"  {row}: {times(m['us'], w['us'], wire_s)} "
                             f"us/frame, {times(m['tcp1'], w['tcp1'], 'its')} TCP1")
    return "\n".join(lines)


# What a policy costs each switch: the policy rows against the same switch without one.

POLICY_BASES = {"vswitchd": "vsw-tap-w1", "ovs": "ovs-tap-tso", "bridge": "bridge"}


def format_policy(med: dict[str, Metrics]) -> str:
    lines = []
    for name, m in med.items():
        cfg = BY_NAME[name]
        if not cfg.acl_rules:
            continue
        base = POLICY_BASES.get(cfg.family, "")
        b = med.get(base)
        kind = "stateful" if cfg.stateful else "stateless"
        head = f"{name} ({cfg.acl_rules} rules, {kind})"
        if not b:
            lines.append(f"{head}: ({base} not measured)")
            continue
        parts = [f"TCP1 {_fmt(_ratio(m['tcp1'], b['tcp1']), '.2f')}x",
                 f"64B kpps {_fmt(_ratio(m['kpps'], b['kpps']), '.2f')}x"]
        if cfg.family != "bridge":
            # The difference in CPU per frame is what the policy costs, in
            # the units bench/acl_bench.c prints (ns per classified frame).
            extra = (f" ({(m['us'] - b['us']) * 1e3:+.0f} ns)"
                     if m["us"] is not None and b["us"] is not None else "")
            parts.append(f"us/frame {_fmt(_ratio(m['us'], b['us']), '.2f')}x{extra}")
        parts.append(f"ping {_fmt(_ratio(m['ping'], b['ping']), '.2f')}x")
        lines.append(f"{head}: " + ", ".join(parts) + f" of {base}")
    return "\n".join(lines)


# Main.


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short run: 2 s tests, only the configurations marked quick")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--runs", type=int, default=1, help="interleaved repetitions (median)")
    ap.add_argument("--json", dest="json_path", default="", help="write raw results here")
    ap.add_argument("--duration", type=int, default=None, help="iperf3 -t (default 5; quick 2)")
    ap.add_argument("--blast", type=float, default=None,
                    help="64-byte blast window, s (default 4; quick 2)")
    ap.add_argument("--list", action="store_true", help="list configurations and exit")
    args = ap.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 5)
    args.blast = args.blast or (2.0 if args.quick else 4.0)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    return args


def select(args: argparse.Namespace) -> list[Config]:
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME and n not in vhost_bench.BY_NAME]
        if unknown:
            raise SystemExit(f"bench: unknown configuration(s) {', '.join(unknown)}; "
                             f"known: {', '.join([*BY_NAME, *vhost_bench.BY_NAME])}")
        return [BY_NAME[n] for n in names if n in BY_NAME]
    return [c for c in CONFIGS if c.quick or not args.quick]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def machine() -> dict[str, str]:
    lscpu = run(["lscpu"], 10, check=False).stdout.splitlines()[:10]
    return {"nproc": str(os.cpu_count()), "kernel": platform.release(),
            "lscpu": "\n".join(lscpu),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CONFIGS:
            print(f"{c.name:26} {c.family:8} {c.ports:9} hosts={c.hosts} "
                  f"{'quick' if c.quick else ''}")
        for r in vhost_bench.ROWS:
            print(f"{r.name:26} {'vhost':8} {r.switch:9} {'quick' if r.quick else ''}")
        return 0
    if os.geteuid() != 0:
        print("bench: needs root (namespaces, TAPs, bridges)", file=sys.stderr)
        return 2
    configs = select(args)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    vhost_rows = vhost_bench.select(only, args.quick)
    if vhost_rows:
        vhost_bench.ensure_packages(vhost_rows)
    missing = ensure_tools(any(c.family == "ovs" for c in configs),
                           any(c.family == "bridge" and c.acl_rules for c in configs))
    if "ovs-vswitchd" in missing:
        print("bench: Open vSwitch unavailable, skipping the ovs-* rows", file=sys.stderr)
        configs = [c for c in configs if c.family != "ovs"]
        missing.remove("ovs-vswitchd")
    if "nft" in missing:
        print("bench: nft unavailable, skipping the bridge-nft* rows", file=sys.stderr)
        configs = [c for c in configs if not (c.family == "bridge" and c.acl_rules)]
        missing.remove("nft")
    if missing:
        print(f"bench: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    info = machine()
    samples: list[Sample] = []
    vhost_samples: list[vhost_bench.VhostSample] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="vsb-") as tmp:
        code_dir = Path(tmp) / "code"
        if any(c.family == "vswitchd" for c in configs) or \
                any(r.switch == "vswitchd" for r in vhost_rows):
            try:
                info.update(vswitchd_runner.snapshot(code_dir))
            except BenchError as e:
                print(f"bench: this checkout's vswitchd does not import: {e}", file=sys.stderr)
                return 1
        try:
            for run_no in range(1, args.runs + 1):
                for i, cfg in enumerate(configs):
                    workdir = Path(tmp) / f"r{run_no}-{i}-{cfg.name}"
                    workdir.mkdir()
                    samples.append(measure(cfg, run_no, args, workdir, code_dir))
                for i, row in enumerate(vhost_rows):
                    workdir = Path(tmp) / f"r{run_no}-v{i}-{row.name}"
                    workdir.mkdir()
                    vhost_samples.append(vhost_bench.measure(row, run_no, args.blast,
                                                             workdir, code_dir))
        except KeyboardInterrupt:
            interrupted = True
            print("\nbench: interrupted; everything created has been removed", flush=True)
    med = summarize(samples)
    goals = targets(med)
    print()
    print(f"{info['date']}  {info['nproc']} CPUs  Linux {info['kernel']}  "
          f"vswitchd {info.get('git', '-')} (fastpath {info.get('fastpath_sha256', '-')[:12]})  "
          f"runs={args.runs} iperf3 -t {args.duration}  64B window {args.blast:g} s")
    if med:
        print(table(med))
        print("\n2x1 = two concurrent single-stream pairs (A->B + C->D), total. "
              "us/frame and cpu % = switch process CPU during the 64B test (n/a: in-kernel). "
              "xOVS/xBR = ratio to the matching Open vSwitch / Linux bridge row. "
              "steal % = CPU time the hypervisor took during the row (noise gauge).")
    if goals:
        print("\nTargets:\n" + format_targets(goals))
    floors = format_floors(med)
    if floors:
        print("\nKernel floor (wire-*: a bare forwarding loop with vswitchd's I/O between "
              "the same kind of ports, no switching):\n" + floors)
    policy_lines = format_policy(med)
    if policy_lines:
        print("\nPort policy (bench/policy.py: N-1 rules that never match ahead of the one "
              "that passes the traffic; against the same switch without a policy):\n"
              + policy_lines)
    if vhost_samples:
        print(f"\nvhost-user (64-byte frames circulating between two vhost-user ports, one "
              f"testpmd with two virtio_user ports in io mode, "
              f"{vhost_bench.BURSTS_IN_FLIGHT}x{vhost_bench.vhost_testpmd.BURST} frames in "
              f"flight per port; generator on CPU {vhost_bench.GEN_CPU}, switch on CPU "
              f"{vhost_bench.SWITCH_CPU}; ns/frame = switch CPU time / frames forwarded; "
              f"x ceiling = Mpps / {vhost_bench.CEILING}):\n" + vhost_bench.table(vhost_samples))
        vgoals = vhost_bench.targets(vhost_samples, med.get("vsw-tap-w1", {}).get("us"))
        if vgoals:
            print("vhost-user targets (vsw-vhost):\n" + "\n".join(vgoals))
    failures = [s for s in samples if s.errors]
    if failures:
        print("\nErrors:")
        for s in failures:
            for err in s.errors:
                print(f"  run {s.run} {s.config}: {err.splitlines()[0]}")
    if args.json_path:
        doc = {"machine": info, "args": vars(args), "samples": [vars(s) for s in samples],
               "median": med, "targets": goals, "interrupted": interrupted,
               "vhost_samples": vhost_bench.as_dicts(vhost_samples),
               "vhost_median": vhost_bench.medians(vhost_samples)}
        Path(args.json_path).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nbench: raw results in {args.json_path}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
