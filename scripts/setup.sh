#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install avvp into it.
#   bash scripts/setup.sh            # .venv, with the test tools
#   AVVP_VENV=/path/venv bash scripts/setup.sh
# PyTorch: an already installed torch is kept (install your CUDA build first if you have a GPU);
# otherwise torch==2.13.0 is installed (the CPU build where pip finds it, as on the project's machines).
# Set AVVP_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to take torch from another index.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AVVP_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
    if [ -n "${AVVP_TORCH_INDEX:-}" ]; then
        "$py" -m pip install -q "torch==2.13.0" --index-url "$AVVP_TORCH_INDEX"
    else
        "$py" -m pip install -q -c constraints-cpu.txt "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
    fi
fi
# The constraints keep pip from replacing the torch just installed.
torch_version=$("$py" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
"$py" -m pip install -q -e ".[dev]" "torch==${torch_version}" 2>&1 | grep -v "^WARNING: Location" || true
"$py" -c "import avvp, torch; print(f'avvp {avvp.__version__} installed in $venv (torch {torch.__version__})')"
