#!/usr/bin/env bash
# The first-run stall of training (issue 6): a one-step `fashion_small` run on an empty Mesa
# shader cache, then again on the cache it filled; prints both wall times, their user CPU and
# the difference, and the time the first step's D kernels took to compile ahead in each run
# (the library's `debug` log, `FEWLABELS_LOG`). Several binaries alternate, so that they
# share the machine's minutes.
# usage: scripts/first_run_stall.sh ROUNDS BIN...   (e.g. 5 target/release/fewlabels)
set -euo pipefail
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
rounds=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmd=(train --data fashion-mnist --preset fashion_small --batch 32 --variant s3gan-co --labels 10% --steps 1)
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -rf "$tmp/cache" "$tmp/a" "$tmp/b"
        for run in a b; do
            /usr/bin/time -o "$tmp/time_$run" -f "%e %U" env MESA_SHADER_CACHE_DIR="$tmp/cache" \
                FEWLABELS_LOG=debug "$bin" "${cmd[@]}" --out "$tmp/$run" >/dev/null 2>"$tmp/log_$run"
        done
        read -r cold cold_user <"$tmp/time_a"
        read -r warm warm_user <"$tmp/time_b"
        stall=$(awk -v c="$cold" -v w="$warm" 'BEGIN { printf "%.2f", c - w }')
        ahead() { grep -m1 -o 'compiled ahead in [0-9.]* ms' "$1" | grep -o '[0-9.]* ms' || echo "? ms"; }
        echo "$bin: empty cache $cold s (user $cold_user), filled $warm s (user $warm_user), stall $stall s; first step's kernels compiled ahead in $(ahead "$tmp/log_a") / $(ahead "$tmp/log_b")"
    done
done
