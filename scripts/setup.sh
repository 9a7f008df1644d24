#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install avvp into it, with the test tools.
#   bash scripts/setup.sh
#   AVVP_VENV=/path/to/venv bash scripts/setup.sh
# PyTorch: an already installed torch is kept (install your CUDA build first if you have a GPU);
# otherwise torch==2.13.0 is installed (the CPU build where pip finds one, as on the project's machines).
# Set AVVP_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to take torch from another index.
# The install is skipped when nothing it depends on changed since the last one into this venv from this checkout
# (pyproject.toml, constraints-cpu.txt, this script: their hash is kept in $venv/.avvp-install); AVVP_INSTALL=always
# installs anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AVVP_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.avvp-install"
wanted="$(cat pyproject.toml constraints-cpu.txt scripts/setup.sh | sha256sum | cut -d' ' -f1) $PWD"
if [ "${AVVP_INSTALL:-}" != always ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
    && [ -x "$venv/bin/avvp" ]; then
    echo "avvp already installed in $venv (nothing changed; AVVP_INSTALL=always reinstalls)"
    exit 0
fi
rm -f "$stamp"

pip_install() {
    # pip's own exit status is kept; only the noise about absent local index folders is dropped.
    "$py" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2)
}

if ! "$py" -c "import torch" 2>/dev/null; then
    if [ -n "${AVVP_TORCH_INDEX:-}" ]; then
        pip_install "torch==2.13.0" --index-url "$AVVP_TORCH_INDEX"
    else
        pip_install -c constraints-cpu.txt "torch==2.13.0"
    fi
fi
# Pinning the installed torch keeps pip from replacing it while it resolves avvp's requirements.
torch_version=$("$py" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
pip_install -e ".[dev]" "torch==${torch_version}"
"$py" -c "import avvp, torch; print(f'avvp {avvp.__version__} installed in $venv (torch {torch.__version__})')" 2>/dev/null
echo "$wanted" > "$stamp"
echo "To run the commands as the README writes them: source $venv/bin/activate"
