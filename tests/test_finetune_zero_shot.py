"""Zero-shot video classification with a tiny UMTForVideoTextRetrieval: scores are the softmax of the frame-averaged
cosine over the temperature, prompts are ensembled, and paths go through the video processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertTokenizer

from _retrieval_tiny import tiny_config
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.zero_shot import UMTZeroShotVideoClassifier, zero_shot_logits
from processors.synthetic import encode_mp4
from processors.video_processing_umt import UMTVideoProcessor

WORDS = ["a", "video", "of", "moving", "left", "right", "growing", "photo"]


@pytest.fixture(scope="module")
def classifier_parts(tmp_path_factory):
    # ids 0..3 are [PAD] [SEP] [CLS] [MASK], as the tiny config expects; the words follow.
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[SEP]", "[CLS]", "[MASK]", "[UNK]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config()).eval()
    return model, tokenizer


def test_scores_are_softmax_of_cosine_over_temperature(classifier_parts):
    model, tokenizer = classifier_parts
    labels = ["moving left", "moving right", "growing"]
    zero_shot = UMTZeroShotVideoClassifier(model, tokenizer, hypothesis_template="a video of {}", max_length=8)
    pixel_values = torch.randn(2, 2, 3, 32, 32)
    results = zero_shot(pixel_values, candidate_labels=labels)
    assert len(results) == 2 and [len(r) for r in results] == [3, 3]

    with torch.no_grad():
        text = tokenizer([f"a video of {label}" for label in labels], padding="max_length", max_length=8,
                         return_tensors="pt")  # fmt: skip
        t = model.get_text_features(text.input_ids, text.attention_mask).pooler_output
        v = model.get_video_features(pixel_values).pooler_output
        expected = (v @ t.T / model.temp).softmax(-1)
    for row, result in zip(expected, results):
        assert [r["score"] for r in result] == pytest.approx(sorted(row.tolist(), reverse=True), abs=1e-6)
        assert result[0]["label"] == labels[int(row.argmax())]
    assert zero_shot(pixel_values[0], candidate_labels=labels, top_k=1)[0]["label"] == results[0][0]["label"]


def test_prompt_ensembling_averages_unit_embeddings(classifier_parts):
    model, tokenizer = classifier_parts
    templates = ["a video of {}", "a photo of {}"]
    zero_shot = UMTZeroShotVideoClassifier(model, tokenizer, hypothesis_template=templates, max_length=8)
    embeds = zero_shot.encode_labels(["growing"])
    singles = [UMTZeroShotVideoClassifier(model, tokenizer, hypothesis_template=t, max_length=8).encode_labels(["growing"]) for t in templates]
    assert torch.allclose(embeds, F.normalize(singles[0] + singles[1], dim=-1), atol=1e-6)
    assert zero_shot_logits(torch.ones(1, 16), embeds, 0.5).shape == (1, 1)
    with pytest.raises(ValueError, match="hypothesis_template"):
        UMTZeroShotVideoClassifier(model, tokenizer, hypothesis_template="no placeholder")


def test_paths_go_through_the_video_processor(classifier_parts, tmp_path):
    model, tokenizer = classifier_parts
    frames = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    encode_mp4(frames, tmp_path / "clip.mp4", codec="mpeg4")
    processor = UMTVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=2)
    zero_shot = UMTZeroShotVideoClassifier(model, tokenizer, processor, max_length=8)
    result = zero_shot(str(tmp_path / "clip.mp4"), candidate_labels=["moving left", "growing"])
    assert {r["label"] for r in result} == {"moving left", "growing"}
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)
    pixel_values = processor(str(tmp_path / "clip.mp4"), do_sample_frames=True, num_frames=2, return_tensors="pt")
    direct = zero_shot(pixel_values["pixel_values"], candidate_labels=["moving left", "growing"])[0]
    assert [r["score"] for r in result] == pytest.approx([r["score"] for r in direct], abs=1e-6)
