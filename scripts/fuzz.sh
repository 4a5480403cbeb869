#!/bin/sh
# Fuzz libfewlabels' parsers with cargo-fuzz (libFuzzer), one target after another.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 seconds each, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). It runs on the stable toolchain:
# RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags cargo-fuzz passes, and `-s none`
# builds without a sanitizer (the code under test is safe Rust; crashes are panics, aborts,
# out-of-memory and timeouts, which libFuzzer catches without one). `-a` keeps debug
# assertions (integer overflow checks) on in the optimised build.
# Crashing inputs land in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/
# (commit only the seeds, which tests/reliability.rs `write_fuzz_corpus` writes).
set -eu
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"model_file config_json idx labels_csv image"}
export RUSTC_BOOTSTRAP=1
failed=""
cargo fuzz build -O -a -s none
for t in $targets; do
    echo "== $t: $secs s"
    # A scratch copy of the corpus: new inputs found by this run stay out of git.
    work=$(mktemp -d)
    cp -r "corpus/$t/." "$work/" 2>/dev/null || true
    log="$work.log"
    if cargo fuzz run -O -a -s none "$t" "$work" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=1048576 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done" "$log" || true
    else
        tail -40 "$log"
        echo "== $t FAILED (the input is in fuzz/artifacts/$t/)"
        failed="$failed $t"
    fi
    rm -rf "$work" "$log"
done
if [ -n "$failed" ]; then
    echo "failed:$failed"
    exit 1
fi
