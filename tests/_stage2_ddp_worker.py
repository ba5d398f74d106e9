"""Worker for tests/test_stage2_distributed.py, launched with `torchrun --nproc_per_node 2` (gloo, CPU).

Every rank builds the same tiny model and the same 6-pair batch, keeps its 3 pairs, and computes the VTC loss with
features all-gathered across ranks; rank results are written to <out>/rank<r>.json for the test to compare with the
1-process loss on the combined batch.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import TrainingArguments  # noqa: E402

from _retrieval_tiny import tiny_config, tiny_inputs  # noqa: E402
from modeling_umt import UMTForVideoTextRetrieval  # noqa: E402
from modeling_umt.losses import vtc_loss  # noqa: E402


def main(out_dir: str) -> None:
    args = TrainingArguments(output_dir=out_dir, use_cpu=True, report_to="none")
    _ = args.device  # sets up the process group (gloo on CPU) the way the Trainer does
    import torch.distributed as dist

    assert dist.is_initialized() and dist.get_world_size() == 2, "expected 2 processes"
    rank = dist.get_rank()
    local = slice(3 * rank, 3 * rank + 3)

    # (a) model level: VTC of the local half with gathered features
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(vtm_loss_weight=0.0, mlm_loss_weight=0.0, uta_loss_weight=0.0)).eval()
    pixel_values, ids, mask = tiny_inputs(batch=6)
    pair_ids = torch.tensor([0, 1, 2, 2, 4, 5])  # pairs 2 and 3 (on different ranks) are positives of each other
    out = model(pixel_values[local], ids[local], mask[local], ids=pair_ids[local], return_loss=True)
    model_loss = out.loss_vtc.item()

    # (b) feature level: loss and gradients w.r.t. the local features
    g = torch.Generator().manual_seed(1)
    video, text = torch.randn(6, 2, 8, generator=g), torch.randn(6, 8, generator=g)
    v = video[local].clone().requires_grad_(True)
    t = text[local].clone().requires_grad_(True)
    loss = vtc_loss(v, t, 0.07, ids=pair_ids[local])
    loss.backward()
    result = {
        "rank": rank,
        "model_loss": model_loss,
        "feature_loss": loss.item(),
        "video_grad": v.grad.tolist(),
        "text_grad": t.grad.tolist(),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1])
