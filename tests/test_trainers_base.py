"""The shared trainer base: loss-term logging, the small-subclass contract, library equivalents (timm) and the
epoch callback."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers import TrainingArguments
from transformers.utils import ModelOutput

from modeling_umt.trainers import smooth_one_hot, soft_target_cross_entropy
from modeling_umt.trainers import DecoderEpochCallback, UMTTrainer, output_loss_terms
from modeling_umt.trainers.base import ScalarAccumulator
from processors.mixing import VideoMixup


@dataclass
class _ToyOutput(ModelOutput):
    loss: torch.Tensor | None = None
    loss_answer: torch.Tensor | None = None
    loss_box: torch.Tensor | None = None
    probe_loss_per_layer: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def test_output_loss_terms_take_every_loss_field_and_per_layer_terms():
    out = _ToyOutput(loss=torch.tensor(3.0), loss_answer=torch.tensor(1.0), loss_box=torch.tensor(2.0),
                     probe_loss_per_layer=torch.tensor([0.5, 0.25]), logits=torch.ones(2, 2))  # fmt: skip
    assert output_loss_terms(out) == {"loss_answer": 1.0, "loss_box": 2.0, "probe_layer_0": 0.5, "probe_layer_1": 0.25}
    assert output_loss_terms(out, layer_ids=[4, 7])["probe_layer_7"] == 0.25


def test_scalar_accumulator_averages_each_name_over_its_own_count():
    acc = ScalarAccumulator()
    acc.add({"a": 1.0, "b": 4.0})
    acc.add({"a": 3.0})
    assert acc.pop() == {"a": 2.0, "b": 4.0} and acc.pop() == {}


class _ToyAnswerModel(nn.Module):
    """A stand-in for a future QA head: a linear probe returning two loss terms."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, pixel_values, answer):
        logits = self.proj(pixel_values)
        loss_answer = nn.functional.cross_entropy(logits, answer)
        loss_box = logits.pow(2).mean()
        return _ToyOutput(loss=loss_answer + 0.1 * loss_box, loss_answer=loss_answer, loss_box=loss_box, logits=logits)


class _ToyAnswerTrainer(UMTTrainer):
    """The whole subclass a new task needs: run the model on a batch, hand its logits to the metrics."""

    def model_outputs(self, model, inputs):
        return model(pixel_values=inputs["pixel_values"], answer=inputs["answer"])

    def predictions_from(self, outputs):
        return outputs.logits


class _ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"pixel_values": torch.randn(4, generator=g), "answer": torch.tensor(i % 3)}


def test_a_new_task_trainer_is_a_small_subclass_that_logs_its_loss_terms(tmp_path):
    torch.manual_seed(0)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, logging_steps=1,
                             report_to=[], use_cpu=True, save_strategy="no", label_names=["answer"])  # fmt: skip
    trainer = _ToyAnswerTrainer(model=_ToyAnswerModel(), args=args, train_dataset=_ToyData())
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 2 and all({"loss_answer", "loss_box"} <= set(e) for e in logged)
    prediction = trainer.predict(_ToyData())
    assert prediction.predictions.shape == (8, 3) and prediction.label_ids.tolist() == [i % 3 for i in range(8)]


def test_timm_soft_target_pieces_equal_the_hand_written_formulas():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([2, 0, 4, 1])
    off = 0.1 / 5
    by_hand = torch.full((4, 5), off).scatter_(1, labels.view(-1, 1), 1.0 - 0.1 + off)
    assert torch.equal(smooth_one_hot(labels, 5, 0.1), by_hand)
    logits = torch.randn(4, 5, generator=g, dtype=torch.bfloat16)
    expected = torch.sum(-by_hand * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
    assert torch.equal(soft_target_cross_entropy(logits, by_hand), expected)
    # mixed targets: lam * smooth(y) + (1 - lam) * smooth(y.flip(0)), bit for bit
    torch.manual_seed(3)
    mixup = VideoMixup(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1)
    _, targets, lam = mixup(torch.randn(4, 2, 3, 8, 8), labels)
    assert lam < 1.0 and torch.equal(targets, by_hand * lam + by_hand.flip(0) * (1.0 - lam))


def test_decoder_epoch_callback_sets_the_epoch_and_rejects_other_objects():
    class _Decoder:
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    decoder = _Decoder()
    state = type("S", (), {"epoch": 2.0 - 1e-12})()
    DecoderEpochCallback(decoder).on_epoch_begin(None, state, None)
    assert decoder.epoch == 2
    with pytest.raises(ValueError, match="`decoder` must have a `set_epoch"):
        DecoderEpochCallback(object())
