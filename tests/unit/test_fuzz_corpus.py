"""The libFuzzer targets in tests/fuzz/, as regression tests.

Builds fuzz_pipeline, fuzz_gso and fuzz_vhost (clang, libFuzzer, ASan, UBSan) against
the real csrc/, replays every saved corpus input and every crash kept in
tests/fuzz/crashes/ (a crash stays there as a regression test once its bug
is fixed), then fuzzes each target for a bounded time.  Skipped when clang
or libFuzzer is missing, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time

import pytest

FUZZ = pathlib.Path(__file__).resolve().parents[1] / "fuzz"
RUN_SH = FUZZ / "run.sh"
TARGETS = ("pipeline", "gso", "vhost")
FUZZ_SECONDS = 25
# Same limits as run.sh: a frame of 64 KiB plus headers, ASan's appetite.
LIBFUZZER_ARGS = ["-max_len=70000", "-rss_limit_mb=2048", "-timeout=60"]


def _libfuzzer_missing() -> str | None:
    clang = shutil.which(os.environ.get("CC", "clang"))
    if not clang:
        return "clang not installed"
    probe = subprocess.run(
        [clang, "-print-file-name=libclang_rt.fuzzer-x86_64.a"],
        capture_output=True, text=True, check=False)
    if not pathlib.Path(probe.stdout.strip()).is_file():
        return "libFuzzer (libclang-rt-14-dev) not installed"
    return None


@pytest.fixture(scope="module")
def fuzzers() -> dict[str, pathlib.Path]:
    missing = _libfuzzer_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: CI must run the fuzz regression tests")
        pytest.skip(missing)
    build = subprocess.run([str(RUN_SH), "build"], capture_output=True,
                           text=True, check=False, timeout=300, env=_env())
    assert build.returncode == 0, f"building the fuzzers failed:\n{build.stderr[-4000:]}"
    return {t: FUZZ / "bin" / f"fuzz_{t}" for t in TARGETS}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VS_FUZZ_IGNORE", None)     # tests never look past a known bug
    # `make asan` preloads gcc's libasan into pytest; the fuzzers carry
    # clang's runtime and refuse to start next to another one.
    env.pop("LD_PRELOAD", None)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def _inputs(target: str) -> list[pathlib.Path]:
    corpus = sorted((FUZZ / "corpus" / target).iterdir())
    crashes = sorted((FUZZ / "crashes").glob(f"{target}-*"))
    return corpus + crashes


def _crash_report(out: str) -> str:
    """The part of libFuzzer's output that says what broke."""
    lines = out.splitlines()
    keep = [i for i, line in enumerate(lines)
            if "invariant broken" in line or "ERROR:" in line
            or "runtime error" in line or "Running:" in line]
    start = max(0, keep[0] - 2) if keep else max(0, len(lines) - 40)
    return "\n".join(lines[start:start + 40])


@pytest.mark.parametrize("target", TARGETS)
def test_saved_corpus_and_crashes_replay_cleanly(fuzzers, target):
    inputs = _inputs(target)
    assert inputs, f"tests/fuzz/corpus/{target} is empty: run make_seeds.py"
    run = subprocess.run(
        [str(fuzzers[target]), *LIBFUZZER_ARGS, "-runs=1", *map(str, inputs)],
        capture_output=True, text=True, check=False, timeout=120, env=_env())
    assert run.returncode == 0, _crash_report(run.stderr)


def test_bounded_fuzzing_finds_no_crash(fuzzers, tmp_path):
    # Both targets at once, one per core: the whole test takes FUZZ_SECONDS.
    procs = {}
    for target in TARGETS:
        corpus = tmp_path / target
        shutil.copytree(FUZZ / "corpus" / target, corpus)
        procs[target] = subprocess.Popen(
            [str(fuzzers[target]), *LIBFUZZER_ARGS,
             f"-max_total_time={FUZZ_SECONDS}", "-print_final_stats=1",
             f"-artifact_prefix={tmp_path}/{target}-", str(corpus)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=_env())
    deadline = time.monotonic() + FUZZ_SECONDS + 60
    failures = []
    for target, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            failures.append(f"{target}: did not stop after {FUZZ_SECONDS} s")
            continue
        if proc.returncode != 0:
            found = sorted(p.name for p in tmp_path.glob(f"{target}-*"))
            failures.append(f"{target}: exit {proc.returncode}, inputs {found}\n"
                            + _crash_report(err))
    assert not failures, "\n\n".join(failures)
