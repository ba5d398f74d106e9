"""A normal (non-editable) install ships everything the library loads at run time, metric modules included.

The project is installed with pip into a temporary folder (no network: `--no-deps --no-build-isolation` uses the
setuptools of this environment), then a fresh interpreter whose `sys.path` has the installed copy but not the repository
imports both packages, converts a tiny official-layout checkpoint with the converter's CLI, computes the top-k metric
through the trainers' `compute_metrics` and runs the retrieval metric.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_conversion import HEADS, official_pretrain_sd

ROOT = Path(__file__).resolve().parents[1]
# What pip reads: the build files and the two packages (copied, so the build leaves nothing in the repository).
PROJECT_FILES = ("setup.cfg", "pyproject.toml", "README.md", "modeling_umt", "processors")

SMOKE = textwrap.dedent(
    """
    import os, sys

    import numpy as np
    import torch
    from transformers import AutoModelForPreTraining, EvalPrediction

    target, repo, checkpoint, output_dir = sys.argv[1:5]
    import modeling_umt, processors
    for package in (modeling_umt, processors):
        assert package.__file__.startswith(target), f"{package.__name__} imported from {package.__file__}"
    assert repo not in {os.path.abspath(p or os.curdir) for p in sys.path}, sys.path
    from processors import UMTVideoProcessor, VideoClipDecoder  # the lazy exports resolve in the installed copy

    from modeling_umt.convert_original_checkpoint import main  # the CLI's entry point, its own argument parsing
    assert main(["--checkpoint", checkpoint, "--output_dir", output_dir, "--num_attention_heads", sys.argv[5]]) == 0
    assert type(AutoModelForPreTraining.from_pretrained(output_dir)).__name__ == "UMTForPreTraining"

    from modeling_umt.metrics import metric_path
    from modeling_umt.trainers import top_k_compute_metrics
    assert metric_path("top_k_accuracy").startswith(target)
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    top_k = top_k_compute_metrics(k=(1, 2))(EvalPrediction(predictions=scores, label_ids=np.array([1, 1])))
    assert top_k == {"top1": 0.5, "top2": 1.0}, top_k

    from modeling_umt.retrieval_evaluation import METRIC_PATH, recall_metrics
    assert METRIC_PATH.startswith(target)
    recalls = recall_metrics(torch.eye(3), torch.eye(3), [0, 1, 2], [[0], [1], [2]])
    assert recalls["r_mean"] == 100.0 and recalls["t2v_r1"] == 100.0, recalls
    print("installed package smoke test passed")
    """
)


@pytest.mark.slow
def test_non_editable_install_passes_the_smoke_test(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
               "--target", str(target), str(source)]  # fmt: skip
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shipped = {p.name for p in (target / "modeling_umt" / "metrics").iterdir()}
    assert {"accuracy.py", "retrieval.py", "top_k_accuracy.py"} <= shipped

    checkpoint = tmp_path / "b16_ptk710_f8_res224.pth"
    torch.save({"model": official_pretrain_sd()}, checkpoint)
    (tmp_path / "smoke.py").write_text(SMOKE)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / "hf_modules"))  # fmt: skip
    command = [sys.executable, str(tmp_path / "smoke.py"), str(target), str(ROOT), str(checkpoint),
               str(tmp_path / "converted"), str(HEADS)]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installed package smoke test passed" in proc.stdout
