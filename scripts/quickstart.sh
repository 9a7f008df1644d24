#!/usr/bin/env bash
# The main job on the built-in default, from a fresh clone: set up .venv, generate LLP-sim `demo`, build the
# grounding labels, pretrain the `multi` encoder, finetune Base+Adv+Skip+GCAA from raw features, and the MMIL head
# on the pretrained encoder end to end and on its untrained control (three finetuning runs), evaluate, and parse
# three test videos into events and timelines. Each step prints its time; the README's "Set up and run" has the
# times and the disk use measured.
#   bash scripts/quickstart.sh                 # writes runs/quickstart/ (the README's examples use its paths)
#   AVVP_QUICKSTART=/path bash scripts/quickstart.sh
#   AVVP_PRESET=tiny AVVP_SKIP_SETUP=1 AVVP_VENV=/path/to/venv bash scripts/quickstart.sh   # the suite's tiny run
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${AVVP_SKIP_SETUP:-}" ]; then
    setup_start=$SECONDS
    bash scripts/setup.sh
    echo "(set-up: $((SECONDS - setup_start)) s)"
fi
bin="$(cd "${AVVP_VENV:-.venv}/bin" && pwd)"
out="${AVVP_QUICKSTART:-runs/quickstart}"
preset="${AVVP_PRESET:-demo}"
mkdir -p "$out"
export COLUMNS="${COLUMNS:-100}"  # rich's progress bars and tables: the log fits 100 columns
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi  # no escape codes in a file

show() {
    # The command as a user types it after `source .venv/bin/activate`, wrapped at 96 columns.
    local line="+" word
    for word in "$@"; do
        word="${word#"$bin/"}"
        if [ $(( ${#line} + ${#word} + 1 )) -gt 96 ]; then
            echo "$line \\"
            line="     "
        fi
        line="$line $word"
    done
    echo "$line"
}
step() {
    local title="$1" began=$SECONDS
    shift
    printf '\n%s== %s%s\n' "$bold" "$title" "$plain"
    show "$@"
    "$@"
    echo "(step: $((SECONDS - began)) s)"
}
start=$SECONDS

step "LLP-sim $preset corpus (synthetic stand-in for LLP: features + LLP annotation files)" \
    "$bin/avvp" data synth --preset "$preset" --out "$out/data" --overwrite
step "Reference predictions on its test split" \
    "$bin/avvp" data baselines --annotations "$out/data"
step "Grounding labels (snippet graphs, components; balanced: half the snippet pairs grounded)" \
    "$bin/avvp-groundtruth" build --features "$out/data/pretrain.h5" --out "$out/avg.h5" --overwrite --quiet
step "Grounding label statistics" \
    "$bin/avvp-groundtruth" stats "$out/avg.h5" --plot "$out/avg.png" --overwrite
step "Pretraining the encoder (multi: audio-audio, visual-visual, audio-visual pairs)" \
    "$bin/avvp-pretrain" --variant multi --features "$out/data/pretrain.h5" --labels "$out/avg.h5" \
    --out "$out/encoder-multi" --preset "$preset" --overwrite
step "Finetuning Base+Adv+Skip+GCAA on the raw features" \
    "$bin/avvp-finetune" --model base-adv-skip-gcaa --features "$out/data/llp.h5" --annotations "$out/data" \
    --out "$out/run-raw" --preset "$preset" --overwrite --quiet
step "Finetuning on the pretrained encoder, end to end (Pretrain E2E multi)" \
    "$bin/avvp-finetune" --e2e --encoder "$out/encoder-multi" --features "$out/data/llp.h5" \
    --annotations "$out/data" --out "$out/run-e2e" --preset "$preset" --overwrite --quiet
step "Its untrained control (the same encoder, never trained: what pretraining is measured against)" \
    "$bin/avvp-pretrain" init --variant multi --features "$out/data/pretrain.h5" --out "$out/encoder-control" \
    --preset "$preset" --overwrite
step "Finetuning on the untrained control, end to end" \
    "$bin/avvp-finetune" --e2e --encoder "$out/encoder-control" --features "$out/data/llp.h5" \
    --annotations "$out/data" --out "$out/run-e2e-control" --preset "$preset" --overwrite --quiet
step "Scoring the saved predictions with the official evaluation" \
    "$bin/avvp" evaluate --pred-audio "$out/run-e2e/pred_audio.csv" --pred-visual "$out/run-e2e/pred_visual.csv" \
    --annotations "$out/data" --split test
videos=$(sed -n '2,4p' "$out/data/AVVP_test_pd.csv" | cut -f1 | paste -sd, -)
step "Parsing three test videos into timed events (the truth drawn under the predictions)" \
    "$bin/avvp" parse --run "$out/run-e2e" --features "$out/data/llp.h5" --videos "$videos" \
    --annotations "$out/data" --out "$out/events.json" --csv "$out/preds" --plot "$out/timelines" --overwrite

printf '\n%s== The three runs side by side, test split of LLP-sim %s (synthetic data, not LLP)%s\n' \
    "$bold" "$preset" "$plain"
"$bin/python" scripts/compare_runs.py "$out/run-raw" "$out/run-e2e" "$out/run-e2e-control" \
    --effect "$out/run-e2e" "$out/run-e2e-control"
if [ "$preset" = demo ]; then
    echo "Over 3 seeds (README, Results, Table 1) Pretrain E2E (multi) minus its control is -2.3 +- 1.1"
    echo "segment Type@AV: one seed shows the pipeline, not an effect."
fi
cat <<DONE

Done in $((SECONDS - start)) s (set-up not counted); $(du -sh "$out" | cut -f1) in $out. Where things are:
  $out/data/            LLP-sim corpus (llp.h5, pretrain.h5, AVVP_*.csv)
  $out/avg.h5, avg.png  grounding labels and their histogram
  $out/encoder-multi/   pretrained encoder (config.json + model.safetensors)
  $out/run-raw/         finetuning run on raw features (metrics.json, pred_*.csv, model)
  $out/run-e2e/         finetuning run on the encoder end to end
  $out/encoder-control/ its untrained control; run-e2e-control/: finetuned on it
  $out/events.json      parsed events; preds/: CSVs; timelines/: pictures
To run the README's commands as written:  source ${AVVP_VENV:-.venv}/bin/activate
DONE
