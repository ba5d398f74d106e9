#!/usr/bin/env bash
# The main job on built-in defaults: set up .venv if needed, then run the UMT pipeline on the synthetic videos
# (Stage-1 distillation -> Stage-2 video-language training -> fine-tuning -> classification and retrieval evaluation,
# results table and figures under outputs/pipeline/).
# Finished stages are skipped on a rerun; an interrupted stage resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash training_scripts/setup_env.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DS_ACCELERATOR=cpu
exec "${UMT_VENV:-.venv}/bin/python" training_scripts/run_pipeline.py "$@"
