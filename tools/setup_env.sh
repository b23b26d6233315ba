#!/usr/bin/env bash
# Create ./.venv with the locked CPU set and install this plugin into it.
# Idempotent: a second run only re-checks.
#   bash tools/setup_env.sh           # what the pipeline and tools need
#   bash tools/setup_env.sh --test    # + the test set, Chromium,
#                                     #   chromedriver and tesseract (tests)
# The exact versions: requirements/lock-cpu.txt (+ lock-test.txt with
# --test); `python tools/env_lock.py compile` regenerates them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEST=()
[ "${1:-}" = "--test" ] && TEST=(--test)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Exactly the lock: every distribution at its locked version, nothing else.
.venv/bin/python tools/env_lock.py sync "${TEST[@]}"
# The plugin itself, editable; its wheel carries the start-up file of the
# compatibility fixes (xtuner_chartmoe/compat.py).
.venv/bin/pip install -q --no-deps --no-build-isolation -e .
# The PoT sandbox (xtuner_chartmoe/evaluation/sandbox.py) runs programs
# under bubblewrap; without it PoT evaluation stops (fails closed).
APT=()
command -v bwrap >/dev/null || APT+=(bubblewrap)
if [ ${#TEST[@]} -gt 0 ]; then
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
.venv/bin/python -c "import torchvision.transforms, xtuner.dataset" \
  && echo "environment ready: .venv"
