"""Video question answering: `UMTVideoQATrainer` (official `tasks/vqa.py` training loop)."""

from __future__ import annotations

from .base import UMTTrainer


class UMTVideoQATrainer(UMTTrainer):
    """Train a `UMTForVideoQuestionAnswering` with the frequency-weighted answer loss (official `UMT_QA.forward`).

    Inputs per batch (`processors.video_qa.VideoQACollator`): pixel_values (B, T, C, H, W), input_ids and
    attention_mask (B, Lq) of the questions, labels and decoder_attention_mask (A, La) of the distinct answers,
    answers_per_question (B,), answer_weights (A,). Other keys (answers, question_id, ...) are ignored, so run it with
    `remove_unused_columns=False`. Evaluation reports the loss; accuracy over an answer list comes from
    `modeling_umt.qa_evaluation.evaluate_qa` (the official ranking).
    """

    def model_outputs(self, model, inputs):
        return model(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            labels=inputs["labels"],
            decoder_attention_mask=inputs.get("decoder_attention_mask"),
            answers_per_question=inputs.get("answers_per_question"),
            answer_weights=inputs.get("answer_weights"),
        )


__all__ = ["UMTVideoQATrainer"]
