#!/usr/bin/env bash
# Set up the venv if needed (the locked versions; UMT_UPGRADE=1 for the newest releases; UMT_VENV for another folder;
# see training_scripts/setup_env.sh) and run the whole test suite on CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash training_scripts/setup_env.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DS_ACCELERATOR=cpu
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.torch_extensions}"
exec "${UMT_VENV:-.venv}/bin/python" -m pytest tests -q "$@"
