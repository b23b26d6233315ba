#!/usr/bin/env bash
# Create ./.venv with the verified CPU set and install this plugin into it.
# Idempotent: a second run only re-checks.
#   bash tools/setup_env.sh           # what the pipeline and tools need
#   bash tools/setup_env.sh --test    # + pytest, selenium, Chromium,
#                                     #   chromedriver and tesseract (tests)
# The exact versions: requirements/constraints-cpu.txt (applied with -c).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP=(.venv/bin/pip install -q -c requirements/constraints-cpu.txt)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import xtuner, torch, torchvision, gradio, lmms_eval, deepspeed" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # One pip command for torch, torchvision and XTuner: letting pip choose
  # torchvision separately pulls CUDA torch.
  "${PIP[@]}" torch torchvision xtuner
  # The extras: demo (gradio 5 keeps the hub client transformers 4.48
  # supports) and eval (lmms-eval).
  "${PIP[@]}" "gradio>=5,<6" huggingface_hub lmms-eval
  # DeepSpeed builds from source: without its CUDA ops, against this torch.
  DS_BUILD_OPS=0 "${PIP[@]}" --no-build-isolation deepspeed
fi
.venv/bin/pip install -q --no-deps -e .
# Start-up fixes for XTuner on this stack (xtuner_chartmoe/compat.py): a
# .pth file whose hooks act only when their module is imported.
.venv/bin/python -c "import xtuner_chartmoe.compat as c; print('wrote', c.write_pth_file())"
# The PoT sandbox (xtuner_chartmoe/evaluation/sandbox.py) runs programs
# under bubblewrap; without it PoT evaluation stops (fails closed).
APT=()
command -v bwrap >/dev/null || APT+=(bubblewrap)
if [ "${1:-}" = "--test" ]; then
  "${PIP[@]}" pytest selenium
  command -v chromium >/dev/null || APT+=(chromium)
  command -v chromedriver >/dev/null || APT+=(chromium-driver)
  command -v tesseract >/dev/null || APT+=(tesseract-ocr)
fi
if [ ${#APT[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT[@]}" >/dev/null
  else
    echo "note: install ${APT[*]} (apt-get) as root" >&2
  fi
fi
.venv/bin/python -c "import torchvision.transforms, xtuner.dataset" 2>/dev/null \
  && echo "environment ready: .venv"
