#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in this directory.
#
#   run.sh build                 build every target into bin/
#   run.sh TARGET|all SECONDS    fuzz for SECONDS (per target) from a copy of
#                                the saved corpus; new inputs go to work/TARGET
#                                (gitignored), crashes to crashes/TARGET-*
#   run.sh --replay [TARGET|all] run the saved corpus and crashes/TARGET-* once
#   run.sh --merge [TARGET|all]  minimize corpus/TARGET + work/TARGET back into
#                                corpus/TARGET (-merge=1)
#
# TARGET is pipeline, gso or vhost.  Exit status is nonzero if any target crashed.
# Environment: CC (default clang); VS_FUZZ_CSRC=DIR builds against another
# copy of csrc (e.g. `git archive HEAD csrc` while csrc is mid-edit); FUZZ_JOBS=N fuzzes each target with
# -fork=N -ignore_crashes=1 (keeps going after a crash, N processes).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CSRC="${VS_FUZZ_CSRC:-$ROOT/csrc}"
BIN="$HERE/bin"
WORK="$HERE/work"
CRASHES="$HERE/crashes"
CC="${CC:-clang}"
TARGETS=(pipeline gso vhost)
MAX_CORPUS=200

CFLAGS=(-g -O1 -std=gnu11 -fno-omit-frame-pointer -pthread
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -I"$CSRC")

# Sources of each target: the real csrc files, never copies.
sources() {
    case "$1" in
    pipeline) echo "$HERE/fuzz_pipeline.c" "$CSRC"/vs_*.c ;;
    gso) echo "$HERE/fuzz_gso.c" "$CSRC/vs_gso.c" "$CSRC/vs_csum.c" ;;
    vhost) echo "$HERE/fuzz_vhost.c" "$CSRC"/vs_*.c ;;
    *) echo "unknown target: $1" >&2; exit 2 ;;
    esac
}

targets_of() {
    if [ "${1:-all}" = all ]; then echo "${TARGETS[@]}"; else sources "$1" >/dev/null; echo "$1"; fi
}

# Rebuilds a target when a source or header is newer than its binary; the
# binary is replaced with mv, so a fuzzer running it is not disturbed.
build() {
    mkdir -p "$BIN"
    # A binary built from another csrc (VS_FUZZ_CSRC) is stale too.
    if [ "$(cat "$BIN/.csrc" 2>/dev/null)" != "$CSRC" ]; then
        rm -f "$BIN"/fuzz_*
    fi
    for t in "${TARGETS[@]}"; do
        local out="$BIN/fuzz_$t"
        # shellcheck disable=SC2046
        if [ -x "$out" ] && [ -z "$(find $(sources "$t") "$CSRC"/*.h "$0" \
                                      -newer "$out" 2>/dev/null)" ]; then
            continue
        fi
        # shellcheck disable=SC2046
        "$CC" "${CFLAGS[@]}" -o "$out.tmp.$$" $(sources "$t")
        mv -f "$out.tmp.$$" "$out"
    done
    echo "$CSRC" > "$BIN/.csrc"
}

# Options every run shares.  ASan's leak check stays on; UBSan halts.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
COMMON=(-max_len=70000 -rss_limit_mb=2048 -timeout=60 -print_final_stats=1)

replay() {
    local t=$1 rc=0
    local files=()
    mapfile -t files < <(find "$HERE/corpus/$t" "$CRASHES" -maxdepth 1 -type f \
                             \( -path "$HERE/corpus/$t/*" -o -name "$t-*" \) | sort)
    [ ${#files[@]} -eq 0 ] && return 0
    "$BIN/fuzz_$t" "${COMMON[@]}" -runs=1 "${files[@]}" || rc=$?
    return $rc
}

fuzz() {
    local t=$1 secs=$2 rc=0
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/fuzz_$t.XXXXXX")"
    mkdir -p "$WORK/$t" "$CRASHES"
    # A copy: libFuzzer writes new inputs into its first corpus directory.
    cp -r "$HERE/corpus/$t/." "$tmp/"
    local par=()
    if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        par=(-fork="$FUZZ_JOBS" -ignore_crashes=1)
    fi
    "$BIN/fuzz_$t" "${COMMON[@]}" -max_total_time="$secs" "${par[@]}" \
        -artifact_prefix="$CRASHES/$t-" "$tmp" "$WORK/$t" || rc=$?
    # Keep what this run found for `run.sh --merge`, then drop the copy.
    cp -n "$tmp"/* "$WORK/$t/" 2>/dev/null || true
    rm -rf "$tmp"
    return $rc
}

merge() {
    local t=$1 new="$HERE/corpus/$t.merging"
    rm -rf "$new"
    mkdir -p "$new" "$WORK/$t"
    # Inputs that crash are left out of the corpus; their artifacts go to
    # work/ (a crash worth keeping is minimized into crashes/ by hand).
    "$BIN/fuzz_$t" "${COMMON[@]}" -artifact_prefix="$WORK/$t-merge-" -merge=1 "$new" "$HERE/corpus/$t" "$WORK/$t"
    rm -rf "$HERE/corpus/$t"
    mv "$new" "$HERE/corpus/$t"
    local n
    n=$(find "$HERE/corpus/$t" -type f | wc -l)
    echo "corpus/$t: $n files"
    if [ "$n" -gt "$MAX_CORPUS" ]; then
        echo "warning: corpus/$t has more than $MAX_CORPUS files" >&2
    fi
}

main() {
    local rc=0
    case "${1:-}" in
    build) build ;;
    --replay)
        build
        for t in $(targets_of "${2:-all}"); do replay "$t" || rc=1; done ;;
    --merge)
        build
        for t in $(targets_of "${2:-all}"); do merge "$t"; done ;;
    ""|-h|--help) sed -n '2,16p' "$0"; exit 2 ;;
    *)
        [ $# -eq 2 ] || { sed -n '2,16p' "$0"; exit 2; }
        build
        for t in $(targets_of "$1"); do fuzz "$t" "$2" || rc=1; done ;;
    esac
    return $rc
}

main "$@"
