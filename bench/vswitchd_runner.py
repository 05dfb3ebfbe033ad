"""Start and stop vswitchd for one benchmark configuration.

The daemon runs from this checkout (`python -m vswitchd.daemon`, with the
interpreter that runs the benchmark, i.e. the project's virtualenv) on a TOML
file generated into a private directory, with its own management socket and
the Prometheus exporter disabled.  It is ready when `vswitchctl show --json`
answers and lists every port with link up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import toml_inline
from proc import BenchError, Managed, run

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def snapshot(dest: Path) -> dict[str, str]:
    """Copy the `vswitchd` package (with its built C module) under `dest`.

    Others edit and rebuild the checkout while a long run is going; running
    every vswitchd row from one copy keeps the rows of a run comparable.
    Returns what was copied (git state, sha256 of the C module) for the
    record; raises BenchError if the copy does not import."""
    shutil.copytree(REPO / "vswitchd", dest / "vswitchd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-c", "import vswitchd.fastpath"], 60, cwd=str(dest))
    sos = sorted((dest / "vswitchd").glob("_fastpath*.so"))
    head = run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], 10, check=False)
    return {"git": head.stdout.strip(), "code_dir": str(dest),
            "fastpath_sha256": hashlib.sha256(sos[0].read_bytes()).hexdigest() if sos else ""}


@dataclass(frozen=True)
class PortSpec:
    name: str
    type: str                 # "tap" | "netdev"
    ifname: str
    netns: str | None = None  # tap only
    offload: bool = True      # csum and tso together
    vlan: int | None = None   # access VLAN (default: the switch's, 1)
    acls: tuple[str, ...] = ()          # ACL sets of the port (policy rows)
    acl_default: str | None = None


AclSets = dict[str, list[dict[str, object]]]


def render_config(ports: list[PortSpec], workers: int, socket: Path,
                  acl_sets: AclSets | None = None) -> str:
    """The TOML text for `ports` (pure, so it can be eyeballed in the JSON dump)."""
    lines = ["[switch]", f"workers = {workers}", "",
             "[management]", f'socket = "{socket}"', "",
             "[metrics]", 'listen = ""', ""]
    for name, rules in (acl_sets or {}).items():
        lines += [f"[acls.{name}]", "rules = ["]
        lines += [f"  {toml_inline(r)}," for r in rules]
        lines += ["]", ""]
    for p in ports:
        lines += [f"[ports.{p.name}]", f'type = "{p.type}"', f'ifname = "{p.ifname}"']
        if p.netns:
            lines.append(f'netns = "{p.netns}"')
        if p.vlan is not None:
            lines.append(f"vlan = {p.vlan}")
        if p.acls:
            lines.append("acls = [" + ", ".join(f'"{a}"' for a in p.acls) + "]")
        if p.acl_default:
            lines.append(f'acl_default = "{p.acl_default}"')
        flag = "true" if p.offload else "false"
        lines += [f"offload = {{ csum = {flag}, tso = {flag} }}", ""]
    return "\n".join(lines)


class VswitchdInstance:
    """One daemon; start()/stop() are symmetric, stop() is safe to repeat."""

    def __init__(self, workdir: Path, ports: list[PortSpec], workers: int,
                 code_dir: Path = REPO, acl_sets: AclSets | None = None,
                 netns: str | None = None, extra_toml: str = "",
                 n_ports: int | None = None) -> None:
        self.dir = workdir
        # The VXLAN rows: the daemon runs inside a host's namespace, with
        # ports PortSpec cannot say (`extra_toml`, `n_ports` ports in all).
        self.netns = netns
        self.extra_toml = extra_toml
        self.n_ports = len(ports) if n_ports is None else n_ports
        self.acl_sets = acl_sets
        self.code = str(code_dir)
        self.ports = ports
        self.workers = workers
        self.socket = workdir / "vswitchd.sock"
        self.config_path = workdir / "vswitchd.toml"
        self.proc: Managed | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(self.ports, self.workers, self.socket,
                                                  self.acl_sets) + "\n" + self.extra_toml)
        # `ip netns exec` execs the daemon: the PID we hold is vswitchd's.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = Managed("vswitchd", [*prefix, sys.executable, "-m", "vswitchd.daemon",
                                         "--config", str(self.config_path)],
                            log_path=self.dir / "vswitchd.log", cwd=self.code)
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise BenchError(f"vswitchd exited with {self.proc.popen.returncode} at "
                                 f"start-up:\n{self.proc.log_tail()}")
            if self.socket.exists():
                try:
                    ports = self.show()["ports"]
                    down = [p["name"] for p in ports if p.get("link") != "up"]
                    if len(ports) == self.n_ports and not down:
                        return
                    last = f"ports not up: {down or 'missing'}"
                except BenchError as e:
                    last = str(e)
            time.sleep(0.2)
        raise BenchError(f"vswitchd not ready after {START_TIMEOUT_S:g} s ({last}):\n"
                         f"{self.proc.log_tail()}")

    def cli_cmd(self) -> list[str]:
        """vswitchctl for this daemon, as a command prefix (run it with cwd=self.code)."""
        return [sys.executable, "-m", "vswitchd.cli", "--socket", str(self.socket),
                "--timeout", "5"]

    def show(self) -> dict[str, Any]:
        res = run([*self.cli_cmd(), "show", "--json"], 15, cwd=self.code)
        return dict(json.loads(res.stdout))

    def cli(self, *args: str) -> str:
        return run([sys.executable, "-m", "vswitchd.cli", "--socket", str(self.socket),
                    "--timeout", "5", *args], 15, check=False, cwd=self.code).stdout

    def capture(self, port: str) -> Managed:
        """Starts `vswitchctl capture PORT -w /dev/null`; stopping it (SIGTERM
        closes its connection) ends the capture."""
        cap = Managed("capture", [sys.executable, "-m", "vswitchd.cli", "--socket",
                                  str(self.socket), "capture", port, "-w", "/dev/null"],
                      log_path=self.dir / f"capture-{port}.log", cwd=self.code)
        deadline = time.monotonic() + 10
        while "capture on " not in (self.dir / "vswitchd.log").read_text(errors="replace"):
            if not cap.alive() or time.monotonic() > deadline:
                cap.stop()
                raise BenchError(f"capture on {port} did not start: {cap.log_tail()}")
            time.sleep(0.1)
        return cap

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace_s=15)
            self.proc = None
