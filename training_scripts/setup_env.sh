#!/usr/bin/env bash
# Create .venv (when missing) and install the project with its test extras into it. Idempotent: a stamp file
# keyed on setup.cfg skips the install when nothing changed.
#
# torch/torchvision: on this project's CI machines (CPU, Python 3.11, x86_64) torch==2.14.1 and torchvision==0.29.1
# are the only pair that installs offline from local disk and imports together. Elsewhere, set UMT_TORCH_PINS
# (e.g. UMT_TORCH_PINS="torch torchvision" for the newest release, or a CUDA build of your choice); setup.cfg itself
# keeps open ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PINS=${UMT_TORCH_PINS:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=".venv/.umt-installed-$( (cat setup.cfg; echo "$PINS") | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing $PINS and the project (.[test]) into .venv (about 2 minutes on a fresh machine)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "is ignored: it is neither" || true
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $PINS 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python -c "import torch, torchvision, transformers, open_clip, decord, av, datasets, deepspeed, peft" \
    || { echo "[setup] the environment does not import; see the pip output above" >&2; exit 1; }
  rm -f .venv/.umt-installed-*
  touch "$stamp"
fi
