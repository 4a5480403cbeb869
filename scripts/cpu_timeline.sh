#!/usr/bin/env bash
# The process CPU of a one-step `fashion_small` run (the command of first_run_stall.sh), on an
# empty Mesa shader cache and then on the cache it filled: jiffies per 0.2 s (40 = both of two
# cores busy), one line per run. Shows where a first run's time goes (docs/PERFORMANCE.md).
# usage: scripts/cpu_timeline.sh BIN   (e.g. target/release/fewlabels)
set -euo pipefail
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for run in empty filled; do
    MESA_SHADER_CACHE_DIR="$tmp/cache" "$bin" train --data fashion-mnist --preset fashion_small \
        --batch 32 --variant s3gan-co --labels 10% --steps 1 --out "$tmp/$run" >/dev/null 2>&1 &
    pid=$!
    prev=0
    line=""
    while kill -0 "$pid" 2>/dev/null; do
        now=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || break
        line="$line $((now - prev))"
        prev=$now
        sleep 0.2
    done
    wait "$pid" || true
    echo "$run cache:$line"
done
