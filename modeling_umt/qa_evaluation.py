"""Open-ended video QA evaluation (official `tasks/vqa.py` `evaluation` + `eval_simple_qa_acc`): rank a fixed answer
list for every question with `UMTForVideoQuestionAnswering.rank_answers` and score the top answer by exact match
(the `qa_accuracy` metric of `modeling_umt/metrics/`); and multiple choice with `UMTForVideoMultipleChoice`
(official `tasks/retrieval_mc.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import evaluate
import torch

from processors.video_qa import encode_answer_list
from processors.video_text import pre_text

from .metrics import metric_path

__all__ = ["evaluate_multiple_choice", "evaluate_qa", "predict_answers"]


@torch.no_grad()
def predict_answers(model, batches: Iterable[dict], tokenizer, answer_list: Sequence[str], k: int | None = None,
                    max_answer_length: int | None = None) -> list[str]:
    """The top-ranked answer of `answer_list` for every question of `batches` (dicts with pixel_values, input_ids,
    attention_mask, as `VideoQACollator(with_labels=False)` makes them), in order. k: candidates re-scored (default
    the model's `rank_k`, which must not exceed the list)."""
    model.eval()
    length = max_answer_length or model.config.max_answer_length
    candidates = encode_answer_list(tokenizer, list(answer_list), length)
    device = next(model.parameters()).device
    ids, mask = candidates["input_ids"].to(device), candidates["attention_mask"].to(device)
    predictions = []
    for batch in batches:
        topk_ids, _ = model.rank_answers(
            batch["pixel_values"].to(device), batch["input_ids"].to(device), batch["attention_mask"].to(device),
            ids, mask, k=k,
        )
        predictions += [answer_list[i] for i in topk_ids[:, 0].tolist()]
    return predictions


def evaluate_qa(model, batches: Iterable[dict], tokenizer, answer_list: Sequence[str], k: int | None = None,
                max_answer_length: int | None = None) -> tuple[dict[str, float], list[dict]]:
    """Exact-match accuracy (percent) over `batches`, overall and per `question_type` when the batches carry it;
    each batch also needs "answers" (each question's reference answers; the first is the reference, as the official
    single-answer protocol). Returns (metrics, [{"question_id", "question", "answer", "prediction"} ...])."""
    predictions, references, types, rows = [], [], [], []
    answer_list = list(answer_list)

    def remember(stream):
        for batch in stream:
            for i, answers in enumerate(batch["answers"]):
                references.append(answers[0] if isinstance(answers, (list, tuple)) else answers)
                types.append(batch["question_type"][i] if "question_type" in batch else "all")
                rows.append({"question_id": batch["question_id"][i] if "question_id" in batch else len(rows),
                             "answer": references[-1]})
            yield batch

    predictions = predict_answers(model, remember(batches), tokenizer, answer_list, k, max_answer_length)
    for row, prediction in zip(rows, predictions):
        row["prediction"] = prediction
    metric = evaluate.load(metric_path("qa_accuracy"))
    metrics = metric.compute(predictions=predictions, references=references, question_types=types)
    metrics["num_questions"] = len(references)
    return metrics, rows


@torch.no_grad()
def evaluate_multiple_choice(model, batches: Iterable[dict], tokenizer, max_length: int = 32,
                             itm_weight: float = 0.7) -> tuple[dict[str, float], list[int]]:
    """Multiple-choice accuracy (percent) of a `UMTForVideoMultipleChoice` over `batches` of decoded samples
    ({"pixel_values" (B, T, C, H, W), "options": B lists of C texts, "labels" (B,)}, as `VideoCollator` batches
    them): the argmax of the official score mix. Returns ({"accuracy", "num_questions"}, predictions)."""
    model.eval()
    device = next(model.parameters()).device
    predictions, labels = [], []
    for batch in batches:
        options = batch["options"]
        choices = len(options[0])
        if any(len(o) != choices for o in options):
            raise ValueError("every sample of a multiple-choice batch needs the same number of options")
        text = tokenizer([pre_text(t) for o in options for t in o], padding="max_length", truncation=True,
                         max_length=max_length, return_tensors="pt")
        ids = text["input_ids"].view(len(options), choices, -1).to(device)
        mask = text["attention_mask"].view(len(options), choices, -1).to(device)
        scores = model(batch["pixel_values"].to(device), ids, mask, itm_weight=itm_weight).logits
        predictions += scores.argmax(-1).tolist()
        labels += torch.as_tensor(batch["labels"]).tolist()
    metric = evaluate.load(metric_path("accuracy"))
    accuracy = metric.compute(predictions=predictions, references=labels)["accuracy"]
    return {"accuracy": 100.0 * accuracy, "num_questions": len(labels)}, predictions
