#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --all-targets "$@"
