#!/bin/bash
# Syscalls per emit, per daemon thread: `perf trace -s` on a daemon in a fresh
# home over N `kitty-sync emit` processes 20 ms apart (BENCHMARKS.md, issue 10,
# fifth round). Needs perf. Divide each count by N.
#
#     tests/src/bench/hop_count.sh BINDIR N
set -euo pipefail
bin=$1
n=$2
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export SPEC_KITTY_HOME=$home HOME=$home
"$bin/kitty-syncd" run >"$home/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do [ -S "$home/kitty-syncd.sock" ] && break; sleep 0.05; done
payload='{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}'
for _ in 1 2 3; do "$bin/kitty-sync" emit WPStatusChanged --payload "$payload" >/dev/null 2>&1; done
perf trace -s -p "$daemon" -o "$home/trace.txt" &
tracer=$!
sleep 0.5
for _ in $(seq 1 "$n"); do
    "$bin/kitty-sync" emit WPStatusChanged --payload "$payload" >/dev/null 2>&1
    sleep 0.02
done
sleep 0.3
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
kill "$daemon"
wait "$daemon" 2>/dev/null || true
cat "$home/trace.txt"
