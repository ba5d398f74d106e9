"""UMTForVideoQuestionAnswering: shapes, the weighted answer loss, the official ranking, generate, initialisation from
a Stage-2 model, save / reload through the Auto classes, remote code, and the `qa` conversion family."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModel

from _retrieval_tiny import CLS_ID, PAD_ID, SEP_ID, VOCAB, tiny_config, tiny_inputs, tiny_text_config, tiny_vision_config
from modeling_umt import UMTForVideoQuestionAnswering, UMTForVideoTextRetrieval, UMTQAConfig
from modeling_umt.conversion import ConversionError, convert_state_dict, detect_family, to_official_state_dict
from modeling_umt.conversion.cli import main as convert_main
from modeling_umt.losses import answer_sequence_loss, weighted_answer_loss


def qa_config(**overrides) -> UMTQAConfig:
    kwargs = dict(vision_config=tiny_vision_config(uta_num_layers=0), text_config=tiny_text_config(), fusion_layer=2,
                  decoder_start_token_id=CLS_ID, eos_token_id=SEP_ID, rank_k=4)
    return UMTQAConfig(**{**kwargs, **overrides})


def make(seed: int = 0, **overrides) -> UMTForVideoQuestionAnswering:
    torch.manual_seed(seed)
    model = UMTForVideoQuestionAnswering(qa_config(**overrides)).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def answers(rows: list[list[int]], length: int = 5) -> torch.Tensor:
    labels = torch.full((len(rows), length), -100)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = torch.tensor(row)
    return labels


LABELS = answers([[CLS_ID, 5, SEP_ID, SEP_ID], [CLS_ID, 6, 7, SEP_ID, SEP_ID], [CLS_ID, 8, SEP_ID, SEP_ID],
                  [CLS_ID, 9, SEP_ID, SEP_ID]])


def candidates(n: int = 10, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n, 5), PAD_ID)
    ids[:, 0], ids[:, 1], ids[:, 2:4] = CLS_ID, torch.randperm(VOCAB - 4, generator=g)[:n] + 4, SEP_ID
    return ids


def test_shapes_and_the_decoder_layout():
    model = make()
    assert len(model.text_decoder.bert.encoder.layer) == 4 - 2  # layers - fusion_layer
    assert all(layer.crossattention is not None for layer in model.text_decoder.bert.encoder.layer)
    assert model.text_decoder.config.is_decoder
    # the LM head is tied to the decoder's own word embeddings, not the question encoder's
    assert model.text_decoder.cls.predictions.decoder.weight is model.text_decoder.bert.embeddings.word_embeddings.weight
    assert model.text_decoder.bert.embeddings.word_embeddings.weight is not model.text_model.embeddings.word_embeddings.weight
    pixel_values, ids, mask = tiny_inputs()
    out = model(pixel_values, ids, mask, labels=LABELS, answers_per_question=[2, 1, 1])
    assert out.vision_embeds.shape == (3, 2 * 2 * 2, 32)  # all final-norm tokens, not pooled
    assert out.question_embeds.shape == (3, 7, 24) and out.logits.shape == (4, 5, VOCAB)
    assert out.answer_losses.shape == (4,)


def test_loss_is_the_frequency_weighted_sum_over_answers_divided_by_the_batch():
    model = make()
    pixel_values, ids, mask = tiny_inputs()
    weights = torch.tensor([0.75, 0.25, 1.0, 1.0])
    out = model(pixel_values, ids, mask, labels=LABELS, answers_per_question=[2, 1, 1], answer_weights=weights)
    # by hand: each answer's next-token CE summed over its tokens, decoder conditioned on its own question
    states = out.question_embeds.repeat_interleave(torch.tensor([2, 1, 1]), dim=0)
    q_mask = mask.repeat_interleave(torch.tensor([2, 1, 1]), dim=0)
    inputs = LABELS.masked_fill(LABELS == -100, PAD_ID)
    logits = model.text_decoder(inputs, attention_mask=(LABELS != -100).long(), encoder_hidden_states=states,
                                encoder_attention_mask=q_mask).logits
    per_answer = torch.stack([
        F.cross_entropy(logits[a, :-1], LABELS[a, 1:], ignore_index=-100, reduction="sum") for a in range(4)
    ])
    torch.testing.assert_close(out.answer_losses, per_answer, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, (weights * per_answer).sum() / 3, atol=1e-5, rtol=1e-5)
    out.loss.backward()
    assert model.vision_model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_loss_helpers_and_errors():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, 3, -100], [1, 4, -100, -100]])
    expected = torch.stack([F.cross_entropy(logits[0, :2], labels[0, 1:3], reduction="sum"),
                            F.cross_entropy(logits[1, :1], labels[1, 1:2], reduction="sum")])
    torch.testing.assert_close(answer_sequence_loss(logits, labels), expected)
    torch.testing.assert_close(weighted_answer_loss(expected, torch.tensor([0.5, 1.0]), 2), (0.5 * expected[0] + expected[1]) / 2)
    with pytest.raises(ValueError, match="weights"):
        weighted_answer_loss(expected, torch.ones(3), 2)
    model = make()
    pixel_values, ids, mask = tiny_inputs()
    with pytest.raises(ValueError, match="answers_per_question"):
        model(pixel_values, ids, mask, labels=LABELS, answers_per_question=[1, 1, 1])


def test_rank_answers_follows_the_official_protocol():
    model = make()
    pixel_values, ids, mask = tiny_inputs()
    cands = candidates()
    c_mask = (cands != PAD_ID).long()
    topk_ids, topk_probs = model.rank_answers(pixel_values, ids, mask, cands, c_mask, k=4)
    assert topk_ids.shape == topk_probs.shape == (3, 4)
    torch.testing.assert_close(topk_probs.sum(1), torch.ones(3))
    assert (topk_probs[:, :-1] >= topk_probs[:, 1:]).all()
    with torch.no_grad():  # by hand, one question at a time
        states = model(pixel_values, ids, mask).question_embeds
        for b in range(3):
            first = model.text_decoder(cands[:1, :1], encoder_hidden_states=states[b : b + 1],
                                       encoder_attention_mask=mask[b : b + 1]).logits[0, 0].softmax(-1)[cands[:, 1]]
            top_first = first.topk(4).indices
            assert set(topk_ids[b].tolist()) == set(top_first.tolist())
            scores = []
            for c in top_first.tolist():
                labels = cands[c : c + 1].masked_fill(cands[c : c + 1] == PAD_ID, -100)
                logits = model.text_decoder(cands[c : c + 1], attention_mask=c_mask[c : c + 1],
                                            encoder_hidden_states=states[b : b + 1],
                                            encoder_attention_mask=mask[b : b + 1]).logits
                # the first token's log-probability is counted twice: once alone, once inside the sequence loss
                scores.append(first[c].log() - answer_sequence_loss(logits, labels)[0])
            probs = torch.stack(scores).softmax(0)
            order = probs.argsort(descending=True)
            assert topk_ids[b].tolist() == top_first[order].tolist()
            torch.testing.assert_close(topk_probs[b], probs[order], atol=1e-5, rtol=1e-5)
    # the default k is config.rank_k; k beyond the list is an error naming k
    assert model.rank_answers(pixel_values, ids, mask, cands, c_mask)[0].shape == (3, 4)
    with pytest.raises(ValueError, match="`k`"):
        model.rank_answers(pixel_values, ids, mask, cands, c_mask, k=11)


def test_generate_starts_with_cls_and_stops_at_sep():
    model = make()
    pixel_values, ids, mask = tiny_inputs()
    out = model.generate(pixel_values, ids, mask, max_new_tokens=4)
    assert out.shape[0] == 3 and 2 <= out.shape[1] <= 5 and (out[:, 0] == CLS_ID).all()
    # greedy: the second token is the decoder's argmax after [CLS]
    with torch.no_grad():
        states = model(pixel_values, ids, mask).question_embeds
        first = model.text_decoder(torch.full((3, 1), CLS_ID), encoder_hidden_states=states,
                                   encoder_attention_mask=mask).logits[:, 0].argmax(-1)
    assert out[:, 1].tolist() == first.tolist()
    # a decoder biased to [SEP] stops right away
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[SEP_ID] = 1e4
    assert model.generate(pixel_values, ids, mask).tolist() == [[CLS_ID, SEP_ID]] * 3


def test_save_reload_through_auto_classes_and_remote_code(tmp_path):
    from transformers.dynamic_module_utils import get_imports

    model = make()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_umt_qa.UMTForVideoQuestionAnswering"
    assert type(AutoConfig.from_pretrained(tmp_path)) is UMTQAConfig
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is UMTForVideoQuestionAnswering
    assert loaded.text_decoder.cls.predictions.decoder.weight is loaded.text_decoder.bert.embeddings.word_embeddings.weight
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, atol=0, rtol=0, msg=name)
    pixel_values, ids, mask = tiny_inputs()
    cands = candidates()
    a, b = model.rank_answers(pixel_values, ids, mask, cands), loaded.rank_answers(pixel_values, ids, mask, cands)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(model.generate(pixel_values, ids, mask), loaded.generate(pixel_values, ids, mask))
    copied = sorted(tmp_path.glob("*.py"))
    needed = set().union(*(get_imports(path) for path in copied)) - set(sys.stdlib_module_names)
    assert needed <= {"torch", "transformers", "huggingface_hub", "safetensors", "numpy"}, needed


def test_from_retrieval_model_copies_the_fusion_layers_into_the_decoder(tmp_path):
    torch.manual_seed(0)
    retrieval = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(hidden_size=32))).eval()
    model = UMTForVideoQuestionAnswering.from_retrieval_model(retrieval, num_frames=2)
    assert model.config.vision_config.num_frames == 2 and model.config.fusion_layer == 2
    enc, dec = retrieval.text_model.state_dict(), model.text_decoder.state_dict()
    for j in range(2):  # decoder layer j = encoder layer fusion_layer + j, cross-attention included (equal widths)
        for key, value in enc.items():
            if key.startswith(f"encoder.layer.{2 + j}."):
                assert torch.equal(dec[f"bert.encoder.layer.{j}." + key[len(f"encoder.layer.{2 + j}."):]], value), key
    assert torch.equal(dec["bert.embeddings.word_embeddings.weight"], enc["embeddings.word_embeddings.weight"])
    assert torch.equal(dec["cls.predictions.transform.dense.weight"],
                       retrieval.mlm_head.state_dict()["predictions.transform.dense.weight"])
    assert torch.equal(model.vision_model.encoder.layer[0].mlp.fc1.weight, retrieval.vision_model.encoder.layer[0].mlp.fc1.weight)
    # unequal widths (video 32, text 24): everything but the decoder's cross-attention key/value weights is copied
    retrieval.save_pretrained(tmp_path / "ret")
    narrow = UMTForVideoTextRetrieval(tiny_config())
    fresh = UMTForVideoQuestionAnswering(qa_config()).init_decoder_from_encoder(narrow.mlm_head.state_dict())
    assert fresh == [f"bert.encoder.layer.{j}.crossattention.self.{n}.weight" for j in (0, 1) for n in ("key", "value")]
    loaded = UMTForVideoQuestionAnswering.from_retrieval_model(tmp_path / "ret", num_frames=2)
    assert torch.equal(loaded.text_model.embeddings.word_embeddings.weight, retrieval.text_model.embeddings.word_embeddings.weight)


def test_qa_conversion_family_round_trip_and_cli(tmp_path):
    model = make(text_config=tiny_text_config(hidden_size=32))
    official = to_official_state_dict(model)
    assert detect_family(official).name == "qa"
    assert "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight" in official
    assert "text_encoder.encoder.layer.3.crossattention.self.key.weight" in official
    config, ours = convert_state_dict(official, num_frames=2, image_size=32, num_attention_heads=4,
                                      text_num_attention_heads=4)
    converted = UMTForVideoQuestionAnswering(config).eval()
    result = converted.load_state_dict(ours, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[name], value), name
    # the command line: official .pth (with teacher and UTA heads, as QA files may carry) -> a saved directory
    extra = {"clip_teacher.proj": torch.zeros(2), "vision_encoder.clip_decoder.0.head.weight": torch.zeros(2, 2)}
    torch.save({"model": {**official, **extra}}, tmp_path / "qa.pth")
    convert_main(["--checkpoint", str(tmp_path / "qa.pth"), "--output_dir", str(tmp_path / "out"), "--num_frames", "2",
                  "--image_size", "32", "--num_attention_heads", "4", "--text_num_attention_heads", "4"])
    reloaded = AutoModel.from_pretrained(tmp_path / "out")
    assert type(reloaded) is UMTForVideoQuestionAnswering
    assert torch.equal(reloaded.text_decoder.bert.encoder.layer[0].crossattention.self.query.weight,
                       model.text_decoder.bert.encoder.layer[0].crossattention.self.query.weight)
    # a decoder whose depth does not match layers - fusion_layer is refused; unequal widths cannot be exported
    broken = {k: v for k, v in official.items() if not k.startswith("text_decoder.bert.encoder.layer.1.")}
    with pytest.raises(ConversionError, match="decoder has 1 layers"):
        convert_state_dict(broken, num_frames=2, image_size=32, num_attention_heads=4, text_num_attention_heads=4)
    with pytest.raises(ConversionError, match="video width 32 and text width 24"):
        to_official_state_dict(make())


ConfigError = (ValueError, StrictDataclassError)  # @strict validation wraps the ValueError


def test_config_errors_name_the_argument():
    with pytest.raises(ConfigError, match="fusion_layer"):
        qa_config(fusion_layer=4)
    with pytest.raises(ConfigError, match="max_answer_length"):
        qa_config(max_answer_length=1)
    with pytest.raises(ConfigError, match="text_config"):
        qa_config(text_config=tiny_text_config(is_decoder=True))
    decoder = qa_config().decoder_config()
    assert decoder.num_hidden_layers == 2 and decoder.is_decoder and decoder.add_cross_attention
