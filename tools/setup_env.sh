#!/usr/bin/env bash
# Create ./.venv with the verified dependency set and install this plugin.
# Idempotent: a second run only re-checks.
#   bash tools/setup_env.sh           # what the pipeline and tools need
#   bash tools/setup_env.sh --test    # + pytest, Chromium, chromedriver and
#                                     #   tesseract for the web-demo test
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import xtuner, torch, torchvision, gradio" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # One pip command: letting pip choose torchvision separately pulls CUDA torch.
  .venv/bin/pip install -q torch==2.13.0 torchvision==0.28.0 xtuner==0.2.0
  # The demo; gradio 5 keeps the hub client transformers 4.48 supports.
  .venv/bin/pip install -q "gradio>=5,<6" "huggingface_hub==0.36.2"
fi
.venv/bin/pip install -q --no-deps -e .
# The PoT sandbox (xtuner_chartmoe/evaluation/sandbox.py) runs programs
# under bubblewrap; without it PoT evaluation stops (fails closed).
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "note: install bubblewrap (apt-get install bubblewrap) for PoT" >&2
  fi
fi
# Start-up hook: torchvision beside CPU torch, torchrun and --resume on CPU.
.venv/bin/python -m xtuner_chartmoe.compat
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q pytest selenium
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
      || ! command -v tesseract >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver tesseract-ocr >/dev/null
  fi
fi
.venv/bin/python -c "import torchvision.transforms, xtuner.dataset" 2>/dev/null \
  && echo "environment ready: .venv"
