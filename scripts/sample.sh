#!/usr/bin/env bash
# The first command of the README: installs what is needed, builds, and samples.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo run --release --quiet --bin fewlabels -- sample "$@"
