#!/usr/bin/env bash
# Install what libfewlabels needs on Debian/Ubuntu: a Vulkan loader and, when the machine has
# no Vulkan driver, Mesa's software one (lavapipe); C/C++ compilers, python3, pkg-config, cmake
# and valgrind for the C ABI tests; Fashion-MNIST (dataset-fashion-mnist) for the data tests.
# Safe to run again.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root to run: $*" >&2; exit 1; fi
}

need=()
have_loader() {
    for f in /usr/lib/*/libvulkan.so.1 /usr/lib/libvulkan.so.1 /usr/lib64/libvulkan.so.1; do
        [ -e "$f" ] && return 0
    done
    return 1
}
have_loader || need+=(libvulkan1)
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
[ -n "$icds" ] || need+=(mesa-vulkan-drivers)
# The C ABI tests compile C and C++ against the library and run the Python bindings.
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++)
command -v python3 >/dev/null || need+=(python3)
command -v pkg-config >/dev/null || need+=(pkg-config)
# The packaging test builds the C example through the installed CMake package; the memcheck
# tests run the C programs under valgrind (both skip with a message when absent).
command -v cmake >/dev/null || need+=(cmake)
command -v valgrind >/dev/null || need+=(valgrind)
# The data tests read Fashion-MNIST from Debian's package (IDX files, no download at run time).
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        echo "setup: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: please install a Vulkan loader and driver (${need[*]})" >&2
    fi
fi

if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    elif command -v curl >/dev/null; then
        echo "setup: installing Rust with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: please install Rust (https://rustup.rs)" >&2; exit 1
    fi
fi
