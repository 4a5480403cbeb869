#!/usr/bin/env bash
# The experiments of docs/RESULTS.md: every GAN variant on Fashion-MNIST at one training
# budget, with the same network, seed and hyper-parameters; then FID, IS and class
# consistency of each (10,000 samples against the 10,000 test images) in one table.
#
# usage: scripts/experiments.sh STEPS [RUN...]
#   STEPS  the budget: train every run to this step (a run already there is only evaluated;
#          a run below it resumes exactly where it stopped)
#   RUN    names from the list below (default: all of them)
# env: RUNS (folder of the runs, default runs), FEWLABELS (the fewlabels binary, default
#      target/release/fewlabels, built if missing), PARALLEL (runs at a time, default 1)
#
# Every run is `fewlabels train` with the settings of the default model (docs/MODEL_CARD.md);
# only the variant and the labels differ. Runs are resumable: stop at any time, start again.
set -euo pipefail
cd "$(dirname "$0")/.."

steps="${1:?usage: scripts/experiments.sh STEPS [RUN...]}"
shift
runs_dir="${RUNS:-runs}"
bin="${FEWLABELS:-target/release/fewlabels}"
parallel="${PARALLEL:-1}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

# name: variant, labels and (pre-trained-label runs) the labeller's steps (default 2000) and
# self-training rounds (default 1).
declare -A variant=(
    [conditional-100]="conditional all"
    [s3gan-10]="s3gan 10%"
    [s3gan-10-l6000]="s3gan 10% 6000"
    [s3gan-10-l12000]="s3gan 10% 12000"
    [s3gan-20]="s3gan 20%"
    [s3gan-co-10]="s3gan-co 10%"
    [s3gan-co-20]="s3gan-co 20%"
    [s2gan-co-10]="s2gan-co 10%"
    [ssgan]="ssgan none"
    [unconditional]="unconditional none"
)
order=(conditional-100 s3gan-10 s3gan-20 s3gan-co-10 s3gan-co-20 s2gan-co-10 ssgan unconditional
    s3gan-10-l6000 s3gan-10-l12000)
# The recipe of the default model (docs/MODEL_CARD.md).
common=(--data fashion-mnist --preset fashion_small --batch 32 --d-steps 1 --lr-g 2e-4
    --lr-d 4e-4 --ema-decay 0.999 --ema-start 500 --seed 1)
# How often to save and report (not stored in the checkpoint: a resume passes them again).
cadence=(--checkpoint-every 250 --sample-every 250 --eval-every 500)

[ $# -gt 0 ] && order=("$@")
for name in "${order[@]}"; do
    [ -n "${variant[$name]:-}" ] || { echo "experiments: no run named $name (${!variant[*]})" >&2; exit 2; }
done
[ -x "$bin" ] || cargo build --release --bin fewlabels

train_one() {
    local name=$1 out="$runs_dir/$1"
    read -r v labels lsteps lrounds <<<"${variant[$name]}"
    mkdir -p "$runs_dir"
    if [ -f "$out/checkpoint.safetensors" ]; then
        "$bin" train --resume "${cadence[@]}" --steps "$steps" --out "$out"
    else
        "$bin" train "${common[@]}" "${cadence[@]}" --variant "$v" --labels "$labels" \
            --labeller-steps "${lsteps:-2000}" --labeller-rounds "${lrounds:-1}" \
            --steps "$steps" --out "$out"
    fi >>"$out.train.log" 2>&1
    "$bin" eval "$out/model.safetensors" >"$out/eval.txt"
    echo "experiments: $name done ($(grep -m1 '^FID' "$out/eval.txt"))"
}

running=0
for name in "${order[@]}"; do
    train_one "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

# The table: one row per run.
table="$runs_dir/results_${steps}.md"
{
    echo "| run | variant | labels | steps | FID | IS | class consistency | wall time (s) |"
    echo "|---|---|---|---|---|---|---|---|"
    for name in "${order[@]}"; do
        out="$runs_dir/$name"
        read -r v labels _ <<<"${variant[$name]}"
        fid=$(awk '/^FID/ {print $2}' "$out/eval.txt")
        is=$(awk '/^IS/ {print $2}' "$out/eval.txt")
        cons=$(awk '/^consistency/ {print $2}' "$out/eval.txt")
        wall=$(tail -n 1 "$out/log.csv" | awk -F, '{print $NF}')
        echo "| $name | $v | $labels | $steps | $fid | $is | $cons | $wall |"
    done
} >"$table"
cat "$table"
echo "experiments: wrote $table"
