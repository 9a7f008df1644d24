#!/usr/bin/env bash
# Reproduce the paper's Tables 1 and 2 on real LLP features with the `paper` preset (3 seeds per row).
#   bash scripts/reproduce_tables.sh --features DIR --annotations DIR [--seeds N] [--out results/llp]
#                                    [--preset paper] [--rows "Base,HAN"] [--jobs N] [--missing skip]
# DIR (features) holds llp.h5 (and pretrain.h5 for the pretrained rows), made from the LLP feature release with
# `avvp data import-han RELEASE --annotations DIR --out DIR/llp.h5` (README, "Reproducing on real LLP");
# the annotation folder holds the LLP files (AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv,
# AVVP_eval_audio.csv, AVVP_eval_visual.csv). Paths (and the default --out, results/llp) are relative to the
# folder the script is run in. Stages are cached in OUT/cache, so an interrupted run continues where it stopped.
# Meant for a GPU; `--preset tiny --seeds 1 --rows ...` is a minute-long check.
# The toolkit is installed (scripts/setup.sh) first if the environment ($AVVP_VENV, default .venv) lacks it.
set -euo pipefail
usage="usage: $0 --features DIR --annotations DIR [--seeds N] [--out DIR] [--preset NAME] [--rows NAMES] [--jobs N] [--missing error|skip]"
help="$usage

  --features DIR     folder with llp.h5 (avvp data import-han) and, for the pretrained rows, pretrain.h5
  --annotations DIR  folder with the LLP annotation files (AVVP_train.csv, ..., AVVP_eval_visual.csv)
  --seeds N          finetuning seeds per row (default 3)
  --out DIR          output folder and its cache/ (default results/llp)
  --preset NAME      tiny, demo or paper (default paper)
  --rows NAMES       comma-separated rows or families (default: every row)
  --jobs N           stages run at once, each on cores/N threads or its own GPU (default 1)
  --missing MODE     a video of the annotations absent from llp.h5: error (default) or skip (left out, counted)

Relative paths are read from the folder the script is run in. The environment is \$AVVP_VENV (default: .venv
in the repository), installed by scripts/setup.sh when it lacks the toolkit."
features="" annotations="" seeds=3 out="results/llp" preset="paper" rows="" jobs=1 missing="error"
while [ $# -gt 0 ]; do
    case "$1" in -h|--help) echo "$help"; exit 0 ;; esac
    if [ $# -lt 2 ]; then echo "error: $1 needs a value; $usage" >&2; exit 2; fi
    case "$1" in
        --features) features="$2"; shift 2 ;;
        --annotations) annotations="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --preset) preset="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --missing) missing="$2"; shift 2 ;;
        *) echo "error: unknown option $1; $usage" >&2; exit 2 ;;
    esac
done
if [ -z "$features" ] || [ -z "$annotations" ]; then
    echo "error: --features DIR and --annotations DIR are required; $usage" >&2
    exit 2
fi
from_here() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
features=$(from_here "$features")
annotations=$(from_here "$annotations")
out=$(from_here "$out")
cd "$(dirname "$0")/.."
venv="${AVVP_VENV:-.venv}"
if [ ! -x "$venv/bin/avvp-finetune" ] || ! "$venv/bin/python" -c "import avvp" 2>/dev/null; then
    bash scripts/setup.sh
fi
py="$venv/bin/python"
args=(--preset "$preset" --data "$features" --annotations "$annotations" --seeds "$seeds" --out "$out")
args+=(--jobs "$jobs" --missing "$missing")
if [ -n "$rows" ]; then args+=(--rows "$rows"); fi
"$py" -m avvp.benchmarks.tables "${args[@]}"
