#!/usr/bin/env bash
# Reproduce the paper's Tables 1 and 2 on real LLP features with the `paper` preset (3 seeds per row).
#   bash scripts/reproduce_tables.sh --features DIR --annotations DIR [--seeds N] [--out results/llp]
# DIR (features) holds llp.h5 and pretrain.h5, made with `avvp data import-han`; the annotation folder holds the
# LLP files (AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv, AVVP_eval_audio.csv, AVVP_eval_visual.csv).
# Stages are cached in OUT/cache, so an interrupted run continues where it stopped. Meant for a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
features="" annotations="" seeds=3 out="results/llp"
while [ $# -gt 0 ]; do
    case "$1" in
        --features) features="$2"; shift 2 ;;
        --annotations) annotations="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "error: unknown option $1; usage: $0 --features DIR --annotations DIR [--seeds N] [--out DIR]" >&2; exit 2 ;;
    esac
done
if [ -z "$features" ] || [ -z "$annotations" ]; then
    echo "error: --features DIR and --annotations DIR are required" >&2
    exit 2
fi
bash scripts/setup.sh
"${AVVP_VENV:-.venv}/bin/python" -m benchmarks.tables --preset paper --data "$features" --annotations "$annotations" \
    --seeds "$seeds" --out "$out"
