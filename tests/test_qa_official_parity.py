"""Numerical parity of UMTForVideoQuestionAnswering with the official `UMT_QA` (multi_modality/models/umt_qa.py).

Runs only when UMT_OFFICIAL_REPO points at a checkout of the official repository; skipped otherwise. The official
imports and transformers-5 shims are those of test_stage2_official_parity.py (its `official` fixture is reused).
The official `encode_vision` (umt_qa.py L69) passes 5 positional arguments to the 4-argument ViT `forward` and
raises a TypeError; the harness replaces it with the intended call `vision_encoder(image, None, use_image,
keep_temporal)` — only here, in the test.

A tiny official model (video and text width 32, as the official decoder requires equal widths; BERT 4 layers with
fusion from 2, decoder 2 layers) gets seeded random weights, goes through our `qa` converter, and both run in
float32 eval mode. Compared, each within 1e-4 (`pytest -s` prints every max |diff|): question states, the weighted
training loss with several answers per question, and the official ranking (top-k ids, their probabilities, the
predictions).
"""

from __future__ import annotations

import types

import pytest
import torch

from _retrieval_tiny import CLS_ID, PAD_ID, SEP_ID, VOCAB, tiny_inputs
from modeling_umt import UMTForVideoQuestionAnswering
from modeling_umt.conversion import convert_state_dict
from test_stage2_official_parity import ATOL, official  # noqa: F401  (the fixture)

WIDTH = 32


def report(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{name}: {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.double() - b.double()).abs().max().item()
    print(f"[qa parity] {name:<32} max|diff| = {diff:.3e}")
    assert diff <= ATOL, f"{name}: {diff}"
    return diff


def build_official_qa(off):
    """A tiny official `UMT_QA` assembled from its parts (its __init__ downloads BERT), with the L69 call fixed."""
    import models.umt_qa as umt_qa  # imported by the fixture's sys.path

    torch.manual_seed(0)

    def bert_config(**overrides):
        config = off.xbert.BertConfig(
            vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=32, pad_token_id=PAD_ID,
        )
        config.fusion_layer, config.encoder_width, config.cross_module = 2, WIDTH, "ca"
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    model = umt_qa.UMT_QA.__new__(umt_qa.UMT_QA)
    torch.nn.Module.__init__(model)
    model.config = types.SimpleNamespace(
        model=types.SimpleNamespace(vision_encoder=types.SimpleNamespace(keep_temporal=False))
    )
    model.tokenizer = types.SimpleNamespace(pad_token_id=PAD_ID)
    model.vision_encoder = off.vit.PretrainVisionTransformer(
        img_size=32, patch_size=16, encoder_embed_dim=WIDTH, encoder_depth=2, encoder_num_heads=4, num_frames=2,
        tubelet_size=1, clip_decoder_embed_dim=WIDTH, clip_output_dim=16, clip_return_layer=0, add_pool_norm=False,
    )
    model.text_encoder = off.xbert.BertModel(bert_config(), add_pooling_layer=False)
    model.text_decoder = off.xbert.BertLMHeadModel(bert_config(fusion_layer=0, num_hidden_layers=2))
    head, bert = model.text_decoder.cls.predictions, model.text_decoder.bert
    head.decoder.weight = bert.embeddings.word_embeddings.weight  # 4.x ties inside init_weights (shimmed away)

    def encode_vision(self, image):  # umt_qa.py L69 with the intended 4-argument call
        use_image = image.shape[1] == 1
        x_vis, _ = self.vision_encoder(image.permute(0, 2, 1, 3, 4), None, use_image, False)
        return x_vis

    model.encode_vision = types.MethodType(encode_vision, model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def answer_ids(rows: list[list[int]], length: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), length), PAD_ID)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != PAD_ID).long()


def test_qa_parity_with_the_official_code(official):
    ref = build_official_qa(official)
    state = {k: v for k, v in ref.state_dict().items()}
    config, ours_sd = convert_state_dict(state, num_frames=2, image_size=32, num_attention_heads=4,
                                         text_num_attention_heads=4)
    config.decoder_start_token_id, config.eos_token_id = CLS_ID, SEP_ID
    ours = UMTForVideoQuestionAnswering(config).eval()
    result = ours.load_state_dict(ours_sd, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    pixel_values, q_ids, q_mask = tiny_inputs(batch=3)
    question = types.SimpleNamespace(input_ids=q_ids, attention_mask=q_mask)

    with torch.no_grad():
        # question states through the fusion layers
        v_ref = ref.encode_vision(pixel_values)
        report("video tokens", ours.get_video_features(pixel_values), v_ref)
        q_ref = ref.text_encoder(q_ids, attention_mask=q_mask, encoder_hidden_states=v_ref,
                                 encoder_attention_mask=torch.ones(v_ref.shape[:-1], dtype=torch.long),
                                 return_dict=True).last_hidden_state
        report("question states", ours(pixel_values, q_ids, q_mask).question_embeds, q_ref)

        # training loss: 2 + 1 + 3 answers, frequency weights, one answer truncated without its second [SEP]
        ids, mask = answer_ids([[CLS_ID, 5, SEP_ID, SEP_ID], [CLS_ID, 6, 7, SEP_ID, SEP_ID], [CLS_ID, 8, SEP_ID, SEP_ID],
                                [CLS_ID, 9, SEP_ID, SEP_ID], [CLS_ID, 10, 11, 12, SEP_ID], [CLS_ID, 13, SEP_ID, SEP_ID]])
        counts, weights = [2, 1, 3], torch.tensor([0.75, 0.25, 1.0, 0.5, 0.25, 0.25])
        loss_ref = ref(pixel_values, question, types.SimpleNamespace(input_ids=ids, attention_mask=mask), k=counts,
                       weights=weights, train=True)
        labels = ids.masked_fill(ids == PAD_ID, -100)
        out = ours(pixel_values, q_ids, q_mask, labels=labels, answers_per_question=counts, answer_weights=weights)
        assert loss_ref.item() > 1.0  # a real loss, not an empty sum
        report("weighted answer loss", out.loss, loss_ref)

        # official ranking over a 16-answer list, top 8
        g = torch.Generator().manual_seed(3)
        cands = [[CLS_ID, int(t), SEP_ID, SEP_ID] for t in torch.randint(4, VOCAB, (12,), generator=g)]
        cands += [[CLS_ID, int(a), int(b), SEP_ID, SEP_ID] for a, b in torch.randint(4, VOCAB, (4, 2), generator=g)]
        c_ids, c_mask = answer_ids(cands)
        topk_ids_ref, topk_probs_ref = ref(pixel_values, question, types.SimpleNamespace(input_ids=c_ids,
                                           attention_mask=c_mask), k=8, train=False)
        topk_ids, topk_probs = ours.rank_answers(pixel_values, q_ids, q_mask, c_ids, c_mask, k=8)
        report("rank: top-k probabilities", topk_probs, topk_probs_ref)
        report("rank: top-k candidate ids", topk_ids, topk_ids_ref)
        report("rank: predictions", topk_ids[:, 0], topk_ids_ref[:, 0])
