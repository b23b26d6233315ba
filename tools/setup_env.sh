#!/usr/bin/env bash
# Create ./.venv with the verified dependency set and install this plugin.
# Idempotent: a second run only re-checks. Usage: bash tools/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import xtuner, torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # One pip command: letting pip choose torchvision separately pulls CUDA torch.
  .venv/bin/pip install -q torch==2.13.0 torchvision==0.28.0 xtuner==0.2.0
fi
.venv/bin/pip install -q --no-deps -e .
.venv/bin/pip install -q pytest
# Start-up hook so PyPI's torchvision imports beside CPU torch (see SPEC §6).
.venv/bin/python -m xtuner_chartmoe.compat
.venv/bin/python -c "import torchvision.transforms, xtuner.dataset" 2>/dev/null \
  && echo "environment ready: .venv"
