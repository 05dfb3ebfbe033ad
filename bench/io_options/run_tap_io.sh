#!/bin/bash
# TAP I/O options benchmark: see tap_io.c.  Root.  Creates namespaces
# vstio-<tag>-a/-b and taps vstio<tag>a/b, removes them by exact name.
# Usage: bench/io_options/run_tap_io.sh MODE [tap_io options]   e.g.
#   run_tap_io.sh readv -t 5;  run_tap_io.sh uring -q 64 -t 5;  run_tap_io.sh readv -n
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cc -O2 -Wall -o /tmp/vs_tap_io "$HERE/tap_io.c" -luring || exit 1
MODE=$1; shift
SECS=5
for ((i = 1; i <= $#; i++)); do [ "${!i}" = "-t" ] && j=$((i + 1)) && SECS=${!j}; done
TAG=$(head -c2 /dev/urandom | od -An -tx1 | tr -d ' \n')
NSA=vstio-$TAG-a; NSB=vstio-$TAG-b; TA=vstio${TAG}a; TB=vstio${TAG}b
cleanup() {
    [ -n "${TG:-}" ] && kill "$TG" 2>/dev/null
    [ -n "${FW:-}" ] && kill "$FW" 2>/dev/null
    wait 2>/dev/null
    ip netns del "$NSA" 2>/dev/null; ip netns del "$NSB" 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NSA"; ip netns add "$NSB"
OUT=$(mktemp)
/tmp/vs_tap_io "$MODE" "$NSA" "$NSB" "$TA" "$TB" "$@" > "$OUT" &
FW=$!
for _ in $(seq 100); do grep -q ready "$OUT" && break; sleep 0.05; done
MACB=$(ip -n "$NSB" -br link show "$TB" | awk '{print $3}')
MACA=$(ip -n "$NSA" -br link show "$TA" | awk '{print $3}')
m() { echo "$1" | sed 's/^/0x/; s/:/, 0x/g'; }
CONF=$(mktemp --suffix=.cfg)
cat > "$CONF" <<CFG
{ $(m "$MACB"), $(m "$MACA"), 0x08, 0x00,
  0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, csumip(14, 33),
  10, 197, 0, 1,  10, 197, 0, 2,
  0x04, 0xd2, 0x00, 0x09, 0x00, 0x1a, 0x00, 0x00, fill(0x41, 18) }
CFG
ip netns exec "$NSA" timeout -s INT $((SECS + 3)) trafgen --dev "$TA" --conf "$CONF" --cpus 1 -q >/dev/null 2>&1 &
TG=$!
sleep 0.3
# tap_io starts measuring 1 s after "ready", trafgen is running by then
wait "$FW"
FW=
grep -v ready "$OUT"
rm -f "$OUT" "$CONF"
