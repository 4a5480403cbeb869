#!/usr/bin/env bash
# The checks only a real GPU can make (issue 6): every test binary on the GPU through Vulkan,
# with the runtime's own kernel choice and with the CPU kernels forced on, and the
# benchmark's figures. For a session lent a device machine (`.library/device`), which has
# no Rust: the binaries are built here and travel.
#
#   scripts/device_check.sh pack   # here: build, strip and pack into .device/ (git-ignored),
#                                  # and fetch the Vulkan loader into .gl/ (git-ignored)
#   scripts/device_check.sh run    # there, in the repository root, with .device and .gl
#                                  # carried; logs and a summary go to $OUT (or ./device-out)
#
# The device tool's call: command `scripts/device_check.sh run`, carry [".device", ".gl"],
# a timeout that leaves time for a second try (each test binary may take 300 s, the benchmark
# 600 s; not yet run on a GPU, so the whole run's length is unknown: 22 MB of binaries, 31
# test binaries run twice each; checked here on lavapipe with a shortened list). The test
# binaries read the repository through the path they were built in (CARGO_MANIFEST_DIR);
# `run` links that path to this copy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

pack() {
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
    local list
    # cargo's messages go to the terminal; the JSON lines name the built executables.
    list=$(cargo test --release --all-targets --no-run --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])
')
    cargo build --release
    local stage=.device/stage
    rm -rf .device
    mkdir -p "$stage/target/release/deps"
    # cargo's layout: the tests find the command, libfewlabels.so and their scratch folders
    # through it.
    local kind name exe
    : >.device/list
    while read -r kind name exe; do
        cp "$exe" "$stage/target/release/deps/"
        echo "$kind $name $(basename "$exe")" >>.device/list
    done <<<"$list"
    cp target/release/fewlabels target/release/libfewlabels.so "$stage/target/release/"
    strip "$stage"/target/release/deps/* "$stage"/target/release/fewlabels \
        "$stage"/target/release/libfewlabels.so
    # One solid archive: the binaries share most of their code, which xz finds across them.
    tar -C "$stage" -cf - target | xz -9e -T2 >.device/target.tar.xz
    rm -rf "$stage"
    echo "$root" >.device/manifest_dir
    grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo /.device/ >>.git/info/exclude
    grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
    mkdir -p .gl
    (cd .gl && apt-get download libvulkan1 >/dev/null)
    du -sh .device .gl
}

run() {
    local out="${OUT:-$root/device-out}"
    mkdir -p "$out"
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    local icd
    for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
        /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
        if [ -e "$icd" ]; then
            export VK_DRIVER_FILES=$icd
            break
        fi
    done
    # Vulkan only: without a driver the tests fail instead of falling back to another backend.
    export FEWLABELS_BACKEND=vulkan
    export XDG_RUNTIME_DIR=/tmp
    local built
    built=$(cat .device/manifest_dir)
    if [ "$built" != "$root" ] && [ ! -e "$built" ]; then
        mkdir -p "$(dirname "$built")"
        ln -s "$root" "$built"
    fi
    xz -dc .device/target.tar.xz | tar -xf -
    nvidia-smi -L >"$out/gpu.txt" 2>&1 || true
    target/release/fewlabels info >>"$out/gpu.txt" 2>&1 || true
    local summary="$out/summary.txt"
    : >"$summary"
    # Each test binary twice: the runtime's own choice of kernels for the adapter, and the
    # CPU adapters' kernels (textures, subgroup shuffles, Winograd) forced on.
    local kind name file rc
    for kernels in auto cpu; do
        while read -r kind name file; do
            # The unit tests of the library and of the command, and the integration tests.
            case $kind in bench | example) continue ;; esac
            # The data, command-line and evaluator tests read Fashion-MNIST, which is not
            # there (30 MB more than the device tool carries with the rest).
            if [ ! -d /usr/share/datasets/fashion-mnist ]; then
                case $name in cli | data | eval)
                    echo "$kernels $kind $name skipped: no Fashion-MNIST" >>"$summary"
                    continue
                    ;;
                esac
            fi
            echo "=== $kind $name" >>"$out/tests-$kernels.log"
            rc=0
            if [ "$kernels" = cpu ]; then
                FEWLABELS_KERNELS=cpu timeout 300 "target/release/deps/$file" >"$out/one.log" 2>&1 || rc=$?
            else
                timeout 300 "target/release/deps/$file" >"$out/one.log" 2>&1 || rc=$?
            fi
            cat "$out/one.log" >>"$out/tests-$kernels.log"
            echo "$kernels $kind $name rc=$rc $(grep -a '^test result' "$out/one.log" | tail -1)" >>"$summary"
        done <.device/list
    done
    rm -f "$out/one.log"
    # The benchmark at full size, PyTorch (on the CPU, as in docs/PERFORMANCE.md) beside it.
    rc=0
    file=$(awk '$1 == "bench" && $2 == "fewlabels" { print $3 }' .device/list)
    if [ -n "$file" ]; then
        FEWLABELS_TORCH_PYTHON="$(command -v python3)" timeout 600 \
            "target/release/deps/$file" --bench >"$out/bench.txt" 2>&1 || rc=$?
        echo "bench rc=$rc" >>"$summary"
    else
        echo "bench: not in .device/list" >>"$summary"
    fi
    cat "$summary"
}

case "${1:-}" in
pack) pack ;;
run) run ;;
*)
    echo "usage: scripts/device_check.sh pack|run" >&2
    exit 2
    ;;
esac
