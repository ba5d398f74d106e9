"""A save / `from_pretrained` round trip is bit-exact on every CPU (modeling_umt/storage.py says why it was not).

The subprocess runs MKL's SSE4.2 kernels (`MKL_ENABLE_INSTRUCTIONS=SSE4_2`), whose GEMM results depend on operand
alignment: without the re-alignment after loading, every one of these round trips differs by 1-2 ULP.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from modeling_umt import UMTConfig, UMTForVideoClassification
from modeling_umt.storage import ALIGNMENT, realign_storage

ROOT = Path(__file__).resolve().parents[1]

ROUND_TRIP = textwrap.dedent(
    """
    import sys, tempfile, torch
    import modeling_umt
    from transformers import AutoModelForVideoClassification
    from modeling_umt import UMTConfig, UMTForVideoClassification

    def misalign(module):  # the opposite of the fix: every weight 4 bytes past a 64-byte boundary
        for p in module.parameters():
            raw = torch.empty(p.numel() * 4 + 128, dtype=torch.uint8)
            start = (-raw.data_ptr()) % 64 + 4
            p.data = raw[start : start + p.numel() * 4].view(torch.float32).view(p.shape).copy_(p.data)

    if sys.argv[1] == "misalign":
        modeling_umt.storage.realign_storage = misalign
    differing = 0
    for seed in range(3):
        torch.manual_seed(seed)
        config = UMTConfig(image_size=32, patch_size=16, num_frames=4, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, num_labels=5)
        model = UMTForVideoClassification(config).eval()
        video = torch.randn(1, 4, 3, 32, 32)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            reloaded = AutoModelForVideoClassification.from_pretrained(tmp).eval()
        with torch.no_grad():
            differing += not torch.equal(model(video).logits, reloaded(video).logits)
    print("DIFFERING", differing)
    """
)


def _round_trips_differing(mode: str) -> int:
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, mode], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.split("DIFFERING")[-1])


def test_reloaded_weights_are_aligned(tmp_path):
    config = UMTConfig(image_size=32, patch_size=16, num_frames=4, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128, num_labels=5)
    UMTForVideoClassification(config).save_pretrained(tmp_path)
    model = UMTForVideoClassification.from_pretrained(tmp_path)
    assert all(t.data_ptr() % ALIGNMENT == 0 for t in [*model.parameters(), *model.buffers()])


def test_realign_keeps_values_flags_and_ties():
    linear = torch.nn.Linear(8, 8)
    raw = torch.empty(64 * 4 + 4, dtype=torch.uint8)
    start = (-raw.data_ptr()) % ALIGNMENT + 4  # 4 bytes past a boundary, like the loader's memory
    unaligned = raw[start : start + 64 * 4].view(torch.float32).view(8, 8)
    unaligned.copy_(linear.weight.detach())
    linear.weight.data = unaligned
    tied = torch.nn.Module()
    tied.a, tied.b = linear, torch.nn.Linear(8, 8)
    tied.b.weight = linear.weight
    before = linear.weight.detach().clone()
    assert realign_storage(tied) == 1
    assert linear.weight.data_ptr() % ALIGNMENT == 0 and torch.equal(linear.weight, before)
    assert linear.weight.requires_grad and tied.b.weight is linear.weight


def test_round_trip_is_bit_exact_under_alignment_sensitive_kernels():
    assert _round_trips_differing("realign") == 0
    # the check has teeth: with the weights put 4 bytes off a boundary after loading, these kernels differ
    if torch.backends.mkl.is_available():
        assert _round_trips_differing("misalign") > 0
