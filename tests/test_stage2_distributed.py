"""2-process CPU run (torchrun, gloo, `use_cpu`): VTC with features gathered across ranks equals the 1-process loss on
the combined batch, and each rank's gradient is its slice of the 1-process gradient (official AllGather semantics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _retrieval_tiny import tiny_config, tiny_inputs
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.losses import vtc_loss

HERE = Path(__file__).resolve().parent


def test_vtc_gathered_over_two_processes_equals_one_process_on_the_combined_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "_stage2_ddp_worker.py"), str(tmp_path)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if run.returncode != 0 and "gloo" in run.stderr.lower() and "not available" in run.stderr.lower():
        pytest.skip("torch.distributed has no gloo backend in this build")
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    # 1 process, the whole batch
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(vtm_loss_weight=0.0, mlm_loss_weight=0.0, uta_loss_weight=0.0)).eval()
    pixel_values, ids, mask = tiny_inputs(batch=6)
    pair_ids = torch.tensor([0, 1, 2, 2, 4, 5])
    expected_model = model(pixel_values, ids, mask, ids=pair_ids, return_loss=True).loss_vtc.item()
    g = torch.Generator().manual_seed(1)
    video = torch.randn(6, 2, 8, generator=g).requires_grad_(True)
    text = torch.randn(6, 8, generator=g).requires_grad_(True)
    loss = vtc_loss(video, text, 0.07, ids=pair_ids, gather=False)
    loss.backward()

    for r, result in enumerate(ranks):
        assert result["model_loss"] == pytest.approx(expected_model, abs=1e-6)
        assert result["feature_loss"] == pytest.approx(loss.item(), abs=1e-6)
        local = slice(3 * r, 3 * r + 3)
        torch.testing.assert_close(torch.tensor(result["video_grad"]), video.grad[local], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(result["text_grad"]), text.grad[local], atol=1e-6, rtol=1e-5)
