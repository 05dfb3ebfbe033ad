"""The vhost-user rows of `make bench` (issue 12): 64-byte frames between two vhost-user ports.

One dpdk-testpmd (the generator, CPU 0) owns two virtio_user ports, one on
each of the switch's two vhost-user sockets, and forwards in io mode: what
port 1 receives it sends out of port 0 and vice versa, so after `start
tx_first N` (N bursts of 64 frames per port in flight) the frames circulate
through the switch (CPU 1) for as long as we let them.  Every frame the
generator receives went through the switch once, so over a fixed window:

  forwarded Mpps  = generator rx (both ports) / window
  switch ns/frame = switch process CPU time (utime+stime, /proc/PID/stat) / frames

Rows, in the same run:
  testpmd-vhost-io  a second testpmd as the switch, two net_vhost ports, io
                    forwarding, no switching logic: the ceiling
  ovs-dpdk-vhost    Open vSwitch-DPDK, two dpdkvhostuserclient ports, NORMAL
  vsw-vhost         vswitchd, two `type = "vhostuser"` ports, one worker

Both testpmds and OVS-DPDK busy-poll; vswitchd's worker polls while busy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vhost_guests
import vhost_ovs
import vhost_testpmd
from proc import BenchError, Managed, run, wait_until

GEN_CPU, SWITCH_CPU = 0, 1
BURSTS_IN_FLIGHT = 8          # per port, of vhost_testpmd.BURST frames
WARMUP_S = 1.5
POLICY_RC = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class VhostRow:
    name: str
    switch: str               # "testpmd" | "ovs-dpdk" | "vswitchd"
    quick: bool = True
    load: str = "testpmd"     # "testpmd": 64-byte frames; "guests": two QEMU guests, TCP


ROWS: tuple[VhostRow, ...] = (
    VhostRow("testpmd-vhost-io", "testpmd"),
    VhostRow("ovs-dpdk-vhost", "ovs-dpdk"),
    VhostRow("vsw-vhost", "vswitchd"),
    VhostRow("testpmd-vhost-guests", "testpmd", quick=False, load="guests"),
    VhostRow("vsw-vhost-guests", "vswitchd", quick=False, load="guests"),
)
BY_NAME = {r.name: r for r in ROWS}
CEILING, OVS_ROW = "testpmd-vhost-io", "ovs-dpdk-vhost"
GUESTS_REF = "testpmd-vhost-guests"


@dataclass
class VhostSample:
    config: str
    run: int
    mpps: float | None = None
    ns_per_frame: float | None = None
    cpu_pct: float | None = None
    frames: int = 0
    tcp_gbps: float | None = None      # guest rows
    window_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def select(names: list[str], quick: bool) -> list[VhostRow]:
    """The vhost rows among `names` (all of them, or the quick ones, when none is named)."""
    if names:
        return [BY_NAME[n] for n in names if n in BY_NAME]
    return [r for r in ROWS if r.quick or not quick]


def ensure_packages(rows: list[VhostRow]) -> None:
    """apt-get install dpdk-dev / openvswitch-switch-dpdk if missing, starting no service."""
    pkgs = [] if vhost_testpmd.available() else ["dpdk-dev"]
    if any(r.switch == "ovs-dpdk" for r in rows) and not vhost_ovs.available():
        pkgs.append(vhost_ovs.PACKAGE)
    if not pkgs:
        return
    print(f"bench: installing {' '.join(pkgs)}", flush=True)
    made_policy = not POLICY_RC.exists()
    if made_policy:
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], 900,
            check=False, env=env)
    finally:
        if made_policy:
            POLICY_RC.unlink()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The switches. Each yields the PID whose CPU time is the switch's, once its
# sockets are ready for the generator (or, in client mode, it is connecting).


@contextlib.contextmanager
def testpmd_switch(workdir: Path, socks: list[Path]) -> Iterator[int]:
    sw = vhost_testpmd.vhost_switch(f"vsbsw-{os.getpid()}", SWITCH_CPU, socks,
                                    workdir / "testpmd-switch.log")
    try:
        wait_until(lambda: all(s.exists() for s in socks) or not sw.alive(), 30,
                   what="testpmd switch sockets")
        if not sw.alive():
            raise BenchError(f"testpmd switch exited: {sw.log_tail(5)}")
        yield sw.pid
    finally:
        sw.stop(sig=2)     # SIGINT: testpmd stops its ports and exits cleanly


@contextlib.contextmanager
def ovs_dpdk_switch(workdir: Path, socks: list[Path]) -> Iterator[int]:
    if not vhost_ovs.available():
        raise BenchError(f"Open vSwitch-DPDK not installed ({vhost_ovs.PACKAGE})")
    inst = vhost_ovs.OvsDpdkInstance(workdir / "ovs", SWITCH_CPU, f"vsbovs-{os.getpid()}")
    try:
        try:
            inst.start()
        except BenchError as e:
            raise BenchError(f"Open vSwitch-DPDK does not run without hugepages here: {e}") \
                from None
        inst.add_bridge("vsbvh")
        for i, s in enumerate(socks):
            inst.add_vhost_client_port("vsbvh", f"vsbvh{i}", s)
        for i in range(len(socks)):
            err = inst.port_error(f"vsbvh{i}")
            if err and err != "[]":
                raise BenchError(f"OVS-DPDK port vsbvh{i}: {err}")
        yield inst.pid
    finally:
        inst.stop()


def vswitchd_config(socks: list[Path], mgmt: Path) -> str:
    lines = ["[switch]", "workers = 1", f"cpus = [{SWITCH_CPU}]", "",
             "[management]", f'socket = "{mgmt}"', "", "[metrics]", 'listen = ""', ""]
    for i, s in enumerate(socks):
        lines += [f"[ports.vh{i}]", 'type = "vhostuser"', f'socket = "{s}"',
                  'socket_mode = "server"', "queues = 1", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def vswitchd_switch(workdir: Path, socks: list[Path], code_dir: Path) -> Iterator[int]:
    mgmt = workdir / "vswitchd.sock"
    conf = workdir / "vswitchd.toml"
    conf.write_text(vswitchd_config(socks, mgmt))
    # taskset: the daemon and every thread it starts (the worker) stay on the
    # switch's CPU, away from the generator's.
    proc = Managed("vswitchd", ["taskset", "-c", str(SWITCH_CPU), sys.executable, "-m",
                                "vswitchd.daemon", "--config", str(conf)],
                   log_path=workdir / "vswitchd.log", cwd=str(code_dir))
    try:
        wait_until(lambda: (mgmt.exists() and all(s.exists() for s in socks))
                   or not proc.alive(), 30, what="vswitchd vhost-user sockets")
        if not proc.alive():
            raise BenchError(f"vswitchd exited at start-up: {proc.log_tail(5)}")
        yield proc.pid
    finally:
        proc.stop(grace_s=15)


@contextlib.contextmanager
def switch(row: VhostRow, workdir: Path, socks: list[Path], code_dir: Path) -> Iterator[int]:
    if row.switch == "testpmd":
        with testpmd_switch(workdir, socks) as pid:
            yield pid
    elif row.switch == "ovs-dpdk":
        with ovs_dpdk_switch(workdir, socks) as pid:
            yield pid
    else:
        with vswitchd_switch(workdir, socks, code_dir) as pid:
            yield pid


def measure(row: VhostRow, run_no: int, window_s: float, workdir: Path,
            code_dir: Path) -> VhostSample:
    sample = VhostSample(row.name, run_no)
    t_start = time.monotonic()
    print(f"bench: run {run_no} {row.name} ...", end="", flush=True)
    socks = [workdir / f"vh{i}.sock" for i in range(2)]
    # OVS's dpdkvhostuserclient ports connect: the generator serves the sockets.
    gen_serves = row.switch == "ovs-dpdk"
    gen = vhost_testpmd.Generator(f"vsbgen-{os.getpid()}", GEN_CPU, socks,
                                  workdir / "testpmd-gen.log", server=gen_serves)
    try:
        if not vhost_testpmd.available():
            raise BenchError("dpdk-testpmd missing (apt-get install dpdk-dev)")
        if row.load == "guests":
            with switch(row, workdir, socks, code_dir):
                sample.tcp_gbps = vhost_guests.tcp_between_guests(socks, workdir)
            return sample
        with contextlib.ExitStack() as stack:
            if gen_serves:
                gen.start(wait=False)
                stack.callback(gen.stop)
                # It listens on one socket at a time, the next once the first is served.
                wait_until(socks[0].exists, 30, what="generator's first vhost-user socket")
            pid = stack.enter_context(switch(row, workdir, socks, code_dir))
            if gen_serves:
                gen.wait_prompt(60)
            else:
                gen.start()
                stack.callback(gen.stop)
            gen.wait_links_up()
            gen.start_circulating(BURSTS_IN_FLIGHT)
            time.sleep(WARMUP_S)
            rx0, cpu0, t0 = gen.rx_packets(), cpu_seconds(pid), time.monotonic()
            time.sleep(window_s)
            rx1, cpu1, t1 = gen.rx_packets(), cpu_seconds(pid), time.monotonic()
            sample.frames, sample.window_s = rx1 - rx0, round(t1 - t0, 3)
            sample.mpps = sample.frames / (t1 - t0) / 1e6
            sample.cpu_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
            if sample.frames:
                sample.ns_per_frame = (cpu1 - cpu0) * 1e9 / sample.frames
            else:
                sample.errors.append("no frame circulated through the switch")
    except BenchError as e:
        sample.errors.append(str(e))
    except Exception as e:  # keep the other rows: record the bug, go on
        sample.errors.append(f"bench bug: {e!r}\n{traceback.format_exc()}")
    finally:
        gen.stop()
        for s in socks:
            with contextlib.suppress(FileNotFoundError):
                s.unlink()
        sample.seconds = round(time.monotonic() - t_start, 1)
        status = f" {len(sample.errors)} error(s)" if sample.errors else ""
        print(f" {sample.seconds:.0f} s{status}", flush=True)
        for err in sample.errors:
            print(f"bench:   {row.name}: {err.splitlines()[0]}", flush=True)
    return sample


# Summary.


def medians(samples: list[VhostSample]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(s.config for s in samples):
        rows = [s for s in samples if s.config == name]
        med: dict[str, float | None] = {}
        for key in ("mpps", "ns_per_frame", "cpu_pct", "tcp_gbps"):
            vals = [getattr(s, key) for s in rows if getattr(s, key) is not None]
            med[key] = statistics.median(vals) if vals else None
        out[name] = med
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(samples: list[VhostSample]) -> str:
    """Median per row, with forwarded-rate ratios to the ceiling and to OVS-DPDK."""
    med = medians(samples)
    ceiling = med.get(CEILING, {}).get("mpps")
    ovs_mpps = med.get(OVS_ROW, {}).get("mpps")
    lines = []
    if any(BY_NAME[name].load != "guests" for name in med):
        lines.append(f"{'row':20} {'Mpps':>7} {'ns/frame':>9} {'cpu %':>6} {'x ceiling':>9} "
                     f"{'x OVS-DPDK':>10}")
    guests_ref = med.get(GUESTS_REF, {}).get("tcp_gbps")
    for name, m in med.items():
        if BY_NAME[name].load == "guests":
            gbps = m["tcp_gbps"]
            lines.append(f"{name:20} two QEMU guests, iperf3 TCP "
                         f"{f'{gbps:.2f}' if gbps is not None else '-'} Gbit/s, "
                         f"x {GUESTS_REF} {_ratio(gbps, guests_ref)}")
            continue
        mpps, nsf, cpu = m["mpps"], m["ns_per_frame"], m["cpu_pct"]
        lines.append(f"{name:20} {f'{mpps:.2f}' if mpps is not None else '-':>7} "
                     f"{f'{nsf:.0f}' if nsf is not None else '-':>9} "
                     f"{f'{cpu:.0f}' if cpu is not None else '-':>6} "
                     f"{_ratio(mpps, ceiling):>9} {_ratio(mpps, ovs_mpps):>10}")
    why = {s.config: s.errors[0].splitlines()[0] for s in samples if s.errors}
    for name, err in why.items():
        lines.append(f"  {name}: {err[:240]}{'...' if len(err) > 240 else ''}")
    return "\n".join(lines)


TAP_US_PER_FRAME = 2.5      # issue 12: vswitchd's TAP path "today", when not measured


def targets(samples: list[VhostSample], tap_us: float | None = None) -> list[str]:
    """Issue 12's targets for vsw-vhost, each a line saying met / missed / not measured."""
    med = medians(samples)
    mine = med.get("vsw-vhost")
    if mine is None:
        return []
    ceiling = med.get(CEILING, {}).get("mpps")
    ovs_mpps = med.get(OVS_ROW, {}).get("mpps")
    tap_ns = 1000 * (tap_us or TAP_US_PER_FRAME)
    checks = [
        (f"switch ns/frame <= {tap_ns / 10:.0f} (1/10 of the TAP path's "
         f"{tap_ns / 1000:.2f} us{'' if tap_us else ', issue 12'})",
         mine["ns_per_frame"], tap_ns / 10, False),
        (f"Mpps >= 0.7x {CEILING}", mine["mpps"], 0.7 * ceiling if ceiling else None, True),
        (f"Mpps >= {OVS_ROW}", mine["mpps"], ovs_mpps, True),
    ]
    out = []
    for label, value, bound, at_least in checks:
        if value is None or bound is None:
            out.append(f"  {label}: not measured")
            continue
        met = value >= bound if at_least else value <= bound
        out.append(f"  {label}: {'met' if met else 'MISSED'} ({value:.3g} vs {bound:.3g})")
    return out


def as_dicts(samples: list[VhostSample]) -> list[dict[str, Any]]:
    return [vars(s) for s in samples]


def tools_missing() -> list[str]:
    return [] if shutil.which(vhost_testpmd.BINARY) else [vhost_testpmd.BINARY]
