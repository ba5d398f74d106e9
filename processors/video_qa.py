"""Video question answering: the text encoding of official `tasks/vqa.py` and the batching of QA samples.

    questions     -> `pre_text`, [CLS] question [SEP], padded / truncated to 25 tokens (official `max_q_len`)
    answers       -> `answer + " [SEP]"`, which tokenizes to [CLS] answer [SEP] [SEP], padded / truncated to 5 tokens
                     (`max_a_len`); padding becomes -100 in `labels`
    answer list   -> the same encoding for every candidate (what `rank_answers` scores)

A multi-piece answer longer than 5 tokens is truncated and loses its second [SEP] or words, as in the official code
(qa_and_detection.md §A): parity needs these exact ids.

A QA sample is the usual sample dict with extra keys: {"pixel_values", "question": str, "answers": [str, ...],
optional "question_id", "question_type"}. `VideoQACollator` turns a batch of them into the model's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .collate import VideoCollator
from .video_text import pre_text

__all__ = [
    "MAX_ANSWER_LENGTH",
    "MAX_QUESTION_LENGTH",
    "VideoQACollator",
    "answers_with_weights",
    "encode_answer_list",
    "encode_answers",
    "encode_questions",
]

MAX_QUESTION_LENGTH = 25
MAX_ANSWER_LENGTH = 5
EOS = "[SEP]"


def _check_length(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def encode_questions(tokenizer, questions: Sequence[str], max_length: int = MAX_QUESTION_LENGTH,
                     clean: bool = True) -> dict[str, torch.Tensor]:
    """Questions -> {"input_ids", "attention_mask"} (B, max_length): `pre_text` (lower case, punctuation removed, as
    the official dataset does; `clean=False` keeps them as given), padded to `max_length` and truncated."""
    _check_length("max_length", max_length, 2)
    if isinstance(questions, str):
        raise ValueError(f"`questions` must be a list of strings, got the string {questions!r}.")
    text = [pre_text(q) if clean else q for q in questions]
    encoded = tokenizer(text, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def encode_answer_list(tokenizer, answers: Sequence[str], max_length: int = MAX_ANSWER_LENGTH) -> dict[str, torch.Tensor]:
    """Answers -> {"input_ids", "attention_mask"} (A, max_length) of `answer + " [SEP]"` ([CLS] answer [SEP] [SEP]),
    padded to `max_length` and truncated: the candidates of `rank_answers`, and the decoder inputs in training."""
    _check_length("max_length", max_length, 2)
    if isinstance(answers, str):
        raise ValueError(f"`answers` must be a list of strings, got the string {answers!r}.")
    if not answers:
        raise ValueError("`answers` is empty; expected at least one answer.")
    encoded = tokenizer([f"{a} {EOS}" for a in answers], padding="max_length", truncation=True,
                        max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def encode_answers(tokenizer, answers: Sequence[str], max_length: int = MAX_ANSWER_LENGTH) -> dict[str, torch.Tensor]:
    """Training answers -> `encode_answer_list`'s ids and mask, plus "labels": the ids with padding set to -100."""
    encoded = encode_answer_list(tokenizer, answers, max_length)
    encoded["labels"] = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    return encoded


def answers_with_weights(raw_answers: str | Sequence[str]) -> tuple[list[str], list[float]]:
    """The annotators' answers of one question -> (distinct answers in first-seen order, each one's frequency):
    official `get_answers_with_weights` ("a", ["a", "a", "b"] -> (["a", "b"], [2/3, 1/3]))."""
    if isinstance(raw_answers, str):
        raw_answers = [raw_answers]
    if not raw_answers or not all(isinstance(a, str) for a in raw_answers):
        raise ValueError(f"`raw_answers` must be a string or a non-empty list of strings, got {raw_answers!r}.")
    counts: dict[str, int] = {}
    for answer in raw_answers:
        counts[answer] = counts.get(answer, 0) + 1
    return list(counts), [n / len(raw_answers) for n in counts.values()]


class VideoQACollator(VideoCollator):
    """Batch decoded QA samples for `UMTForVideoQuestionAnswering`.

    Samples: {"pixel_values": (T, 3, H, W), "question": str, "answers": str or [str, ...], ...}. Output:
    `VideoCollator`'s batch (pixel_values (B, T, 3, H, W) and every other key as a list) plus
    input_ids / attention_mask (B, max_question_length) of the questions and, with `with_labels`, the distinct
    answers of every question in order: labels / decoder_attention_mask (A, max_answer_length),
    answers_per_question (B,) and answer_weights (A,) (`answers_with_weights`). "answers" stays in the batch as the
    list of each question's raw answers (for exact-match evaluation); the question strings are replaced.
    """

    def __init__(self, tokenizer, max_question_length: int = MAX_QUESTION_LENGTH,
                 max_answer_length: int = MAX_ANSWER_LENGTH, with_labels: bool = True):
        super().__init__()
        _check_length("max_question_length", max_question_length, 2)
        _check_length("max_answer_length", max_answer_length, 2)
        self.tokenizer, self.with_labels = tokenizer, with_labels
        self.max_question_length, self.max_answer_length = max_question_length, max_answer_length

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        batch = super().__call__(examples)
        questions = batch.pop("question", None)
        if questions is None:
            raise ValueError(f"samples must carry a 'question' for VideoQACollator; the batch has {sorted(batch)}")
        batch.update(encode_questions(self.tokenizer, questions, self.max_question_length))
        if self.with_labels:
            raw = batch.get("answers")
            if raw is None:
                raise ValueError(f"samples must carry 'answers' to train; the batch has {sorted(batch)}")
            answers, weights, counts = [], [], []
            for item in raw:
                distinct, frequency = answers_with_weights(item)
                answers += distinct
                weights += frequency
                counts.append(len(distinct))
            encoded = encode_answers(self.tokenizer, answers, self.max_answer_length)
            batch.update(
                labels=encoded["labels"], decoder_attention_mask=encoded["attention_mask"],
                answers_per_question=torch.tensor(counts), answer_weights=torch.tensor(weights),
            )
        return batch
