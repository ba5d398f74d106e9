"""Numerical parity of UMTForVideoTextRetrieval with the official multi-modality code (OpenGVLab/unmasked_teacher).

Runs only when UMT_OFFICIAL_REPO points at a checkout of the official repository (it imports
multi_modality/models/..., which need timm and einops, through `tests/_official_stage2.py`, which also holds the
transformers-5 shims xbert needs and assembles the official model); skipped otherwise.

A tiny official model (video ViT width 32, 2 blocks, 2 UTA heads; BERT width 24, 4 layers, fusion from 2) gets seeded
random weights (norms and biases included), goes through our Stage-2 converter, and both run in float32 eval mode on
the same inputs. Compared, each within 1e-4: video and text features, the similarity matrix, ITM logits, and the UTA,
VTC, VTM (same negatives: same seed) and MLM (same corruption: same seed) losses. `pytest -s` prints every max |diff|.
"""

from __future__ import annotations

import os
import types

import pytest
import torch

from _official_stage2 import build_official_umt, official_multi_modality
from _retrieval_tiny import CLS_ID, MASK_ID, PAD_ID, VOCAB, tiny_inputs
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.conversion import convert_state_dict
from modeling_umt.losses import mask_tokens_for_mlm, vtc_loss, vtm_negatives

OFFICIAL_REPO = os.environ.get("UMT_OFFICIAL_REPO")
if not OFFICIAL_REPO:
    pytest.skip("set UMT_OFFICIAL_REPO=/path/to/unmasked_teacher to compare with the official code", allow_module_level=True)

ATOL = 1e-4


def report(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{name}: {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float() - b.float()).abs().max().item()
    print(f"[stage2 parity] {name:<28} max|diff| = {diff:.3e}")
    assert diff <= ATOL, f"{name}: {diff}"
    return diff


@pytest.fixture(scope="module")
def official():
    """The official modules (models.umt, criterions, vit, clip, xbert) imported from UMT_OFFICIAL_REPO/multi_modality,
    under the transformers-5 shims of `_official_stage2`."""
    pytest.importorskip("timm", reason="the official code imports timm")
    pytest.importorskip("einops", reason="the official code imports einops")
    if not os.path.isfile(os.path.join(OFFICIAL_REPO, "multi_modality", "models", "umt.py")):
        pytest.fail(f"UMT_OFFICIAL_REPO={OFFICIAL_REPO!r} has no multi_modality/models/umt.py")
    with official_multi_modality(OFFICIAL_REPO) as off:
        yield off


def build_official(off):
    """A tiny official `UMT` assembled from its parts, weights perturbed off their init."""
    torch.manual_seed(0)
    model = build_official_umt(
        off,
        vision=dict(img_size=32, patch_size=16, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=4,
                    num_frames=2, clip_decoder_embed_dim=32, clip_output_dim=16, clip_return_layer=2),
        bert=dict(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=32),
        fusion_layer=2, embed_dim=16, mlm_probability=0.5, pad_id=PAD_ID, cls_id=CLS_ID, mask_id=MASK_ID,
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_stage2_parity_with_the_official_code(official):
    ref = build_official(official)
    state = {k: v for k, v in ref.state_dict().items()}
    config, ours_sd = convert_state_dict(state, num_frames=2, image_size=32, num_attention_heads=4,
                                         text_num_attention_heads=4)
    config.mask_token_id, config.cls_token_id = MASK_ID, CLS_ID
    ours = UMTForVideoTextRetrieval(config).eval()
    ours.load_state_dict(ours_sd, strict=False)
    ours.tie_weights()
    pixel_values, ids, mask = tiny_inputs(batch=4)
    text = types.SimpleNamespace(input_ids=ids, attention_mask=mask)
    idx = torch.tensor([0, 1, 1, 3])

    with torch.no_grad():
        # (1) test-time features (no mask, keep_temporal) and the similarity matrix
        v_tokens, v_pooled = ref.encode_vision(pixel_values, test=True)
        t_tokens, t_cls = ref.encode_text(text)
        v = ours.get_video_features(pixel_values)
        t = ours.get_text_features(ids, mask)
        report("video tokens", v.last_hidden_state, v_tokens)
        report("video projection (B,T,E)", v.projected_embeds, ref.vision_proj(v_pooled))
        report("text tokens", t.last_hidden_state, t_tokens)
        report("text projection", t.projected_embeds, ref.text_proj(t_cls))
        sim_ref, _ = official.criterions.get_sim(ref.vision_proj(v_pooled), ref.text_proj(t_cls), ref.temp)
        report("similarity / temp", ours(pixel_values, ids, mask).logits_per_video, sim_ref)
        # (2) ITM logits through the fusion layers
        fused = ref.text_encoder.bert(
            encoder_embeds=t_tokens, attention_mask=mask, encoder_hidden_states=v_tokens,
            encoder_attention_mask=torch.ones(v_tokens.shape[:-1], dtype=torch.long), return_dict=True, mode="fusion",
        ).last_hidden_state
        report("ITM logits", ours.get_itm_logits(v.last_hidden_state, t.last_hidden_state, mask),
               ref.itm_head(fused[:, 0]))

        # (3) training losses under a fixed token mask (2 of 4 tokens per frame dropped)
        bool_masked_pos = torch.zeros(4, 8, dtype=torch.bool)
        bool_masked_pos[:, [0, 3, 5, 6]] = True
        teacher = torch.randn(2, 4, 8, 16)
        x_vis, pooled_vis, x_clip = ref.vision_encoder(pixel_values.permute(0, 2, 1, 3, 4), bool_masked_pos, False, False)
        tokens, pooled, uta = ours._encode_video_for_training(pixel_values, bool_masked_pos, True, True)
        report("masked video tokens", tokens, x_vis)
        report("UTA head outputs", uta, x_clip)
        teacher_vis = teacher[:, ~bool_masked_pos].view(2, 4, 4, 16)
        report("UTA loss", ours.uta_heads.loss(uta, teacher, bool_masked_pos), ref.criterion_uta.uta_loss(x_clip, teacher_vis))
        vp_ref, tp_ref = ref.vision_proj(pooled_vis), ref.text_proj(t_cls)
        vp, _ = ours._project_video(pooled)
        report("VTC loss", vtc_loss(vp, t.projected_embeds, ours.temp, idx, gather=False),
               ref.criterion_vtc_vtm.vtc_loss(vp_ref, tp_ref, idx, ref.temp, all_gather=False))
        torch.manual_seed(5)
        vtm_ref = ref.criterion_vtc_vtm.vtm_loss(
            ref.text_encoder.bert, ref.itm_head, ref.temp, x_vis, t_tokens, vp_ref, tp_ref, mask, idx
        )
        torch.manual_seed(5)
        from modeling_umt.losses import video_text_similarity

        negatives = vtm_negatives(video_text_similarity(vp, t.projected_embeds, ours.temp), idx)
        torch.manual_seed(9)
        mlm_ref = ref.criterion_mlm.mlm_loss(ref.text_encoder, text, x_vis, None)
        torch.manual_seed(9)
        mlm_ids, mlm_labels = mask_tokens_for_mlm(ids, MASK_ID, VOCAB, 0.5, pad_token_id=PAD_ID, cls_token_id=CLS_ID)
        out = ours(pixel_values, ids, mask, bool_masked_pos=bool_masked_pos, teacher_features=teacher, ids=idx,
                   return_loss=True, vtm_negatives_override=negatives, mlm_input_ids=mlm_ids, mlm_labels=mlm_labels,
                   gather_vtc=False)
        report("VTM loss (same negatives)", out.loss_vtm, vtm_ref)
        report("MLM loss (same corruption)", out.loss_mlm, mlm_ref)
        report("VTC loss (forward)", out.loss_vtc,
               ref.criterion_vtc_vtm.vtc_loss(vp_ref, tp_ref, idx, ref.temp, all_gather=False))
