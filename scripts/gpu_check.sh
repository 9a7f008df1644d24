#!/usr/bin/env bash
# The GPU benchmarks in one run (about 8 minutes on one H100/H200), for the README's GPU figures:
#   bash scripts/gpu_check.sh [OUT_DIR]        (default OUT_DIR: gpu_check/, one log per benchmark)
# 1. extraction: avvp data extract against the release's JPEG pipeline (avvp.benchmarks.bench_extract, real
#    architectures, random weights: nothing is downloaded), 16 copies of the release's sample video;
# 2. finetuning: training throughput per parser and one epoch against the official HAN per-video .npy loop
#    (avvp.benchmarks.bench_finetune --device cuda --bf16);
# 3. pretraining: throughput at the paper size with bf16 (avvp.benchmarks.bench_pretrain adds it where a GPU is);
# 4. grounding: the fast engine and FAISS threshold calibration (FAISS on the GPU where faiss-gpu is installed,
#    the `gpu` extra; with faiss-cpu the log says so).
# Each step has its own time limit, so that one slow step leaves the others their time; a step that fails or runs
# out of time is reported and the script goes on. Needs the project's virtualenv (AVVP_VENV, default .venv).
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${AVVP_VENV:-.venv}"
python="$venv/bin/python"
out="${1:-gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$python" - <<'PY' | tee "$out/device.txt"
import faiss, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("faiss", faiss.__version__, "GPUs seen by faiss:", faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0)
PY

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit} s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local status=$?
  tail -n 25 "$out/$name.log"
  echo "== $name: exit $status after $((SECONDS - start)) s"
}

step extract 150 "$python" -m avvp.benchmarks.bench_extract --videos 16 --device cuda --workers 8 --json
step finetune 150 "$python" -m avvp.benchmarks.bench_finetune --device cuda --bf16 --workers 4
step pretrain 120 "$python" -m avvp.benchmarks.bench_pretrain --videos 2048 --steps 16
step grounding 60 "$python" -m avvp.benchmarks.bench_grounding --videos 20000 --networkx-videos 2000 --loop-videos 100
echo "logs in $out/"
