"""The MAC table under real concurrency, checked by sanitizers.

Builds tests/c/test_mac_table_threads.c together with csrc/vs_mac_table.c
into a temporary directory, once with ThreadSanitizer and once with
AddressSanitizer + UndefinedBehaviorSanitizer, and runs each: worker threads
learn and look up overlapping keys while a control thread ages, flushes and
dumps, then the table's invariants are checked at quiescence (see the C
file's header).  Needs gcc, not root.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "tests/c/test_mac_table_threads.c",
           ROOT / "csrc/vs_mac_table.c"]
SECONDS = os.environ.get("VS_MAC_STRESS_SECONDS", "1.5")

SANITIZERS = {
    "thread": ["-fsanitize=thread"],
    "address,undefined": ["-fsanitize=address,undefined",
                          "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer"],
}

# Messages of a TSan runtime that cannot start on this kernel (address
# space layout it does not know), as opposed to a race it found.
TSAN_CANNOT_RUN = ("unexpected memory mapping", "failed to allocate",
                   "FATAL: ThreadSanitizer: unsupported")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="needs gcc")


def _build(tmp_path: pathlib.Path, flags: list[str]) -> pathlib.Path:
    exe = tmp_path / "test_mac_table_threads"
    cmd = ["gcc", "-std=gnu11", "-O1", "-g", "-pthread", "-Wall", "-Wextra",
           "-Werror", f"-I{ROOT / 'csrc'}", *flags,
           *map(str, SOURCES), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ,
               TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1",
               ASAN_OPTIONS="detect_leaks=1 abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    # `make asan` preloads gcc's libasan into pytest; a TSan binary
    # crashes with it preloaded, and the others bring their own.
    env.pop("LD_PRELOAD", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("sanitizer", SANITIZERS)
def test_concurrent_learn_lookup_age_flush_keeps_table_consistent(
        tmp_path, sanitizer):
    exe = _build(tmp_path, SANITIZERS[sanitizer])
    res = _run([str(exe), SECONDS])
    if sanitizer == "thread" and res.returncode != 0 and any(
            m in res.stderr for m in TSAN_CANNOT_RUN):
        # Some kernels randomise mmap beyond what TSan maps; without ASLR
        # it usually starts.
        if shutil.which("setarch"):
            res = _run(["setarch", os.uname().machine, "-R", str(exe),
                        SECONDS])
        if res.returncode != 0 and any(m in res.stderr
                                       for m in TSAN_CANNOT_RUN):
            pytest.skip("ThreadSanitizer cannot run on this kernel: "
                        + res.stderr.strip().splitlines()[0])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout
    assert "WARNING: ThreadSanitizer" not in res.stderr
    assert "runtime error" not in res.stderr
