"""UMT models on tiny configs (CPU, < 1M parameters): serialization through the Auto classes, attention kernels,
outputs, token dropping, batching, gradient checkpointing, the sin-cos position table and its interpolation,
classification losses and init, drop path, and the Stage-1 UTA student."""

import contextlib
import copy
import json
import sys
import logging as pylogging
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForVideoClassification
from transformers.utils import logging as hf_logging

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification, UMTVideoModel, uta_loss
from modeling_umt.masking import gather_visible
from modeling_umt.modeling_umt import UMTDropPath, drop_path
from modeling_umt.positions import build_position_embeddings, sinusoid_table

ALL_CLASSES = (UMTVideoModel, UMTForVideoClassification, UMTForPreTraining)


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def tiny_config(**overrides) -> UMTConfig:
    """4 frames of 16x16 px, patch 8 -> 4 x 2 x 2 = 16 tokens; the position reference layout is this one."""
    kwargs = dict(
        image_size=16,
        patch_size=8,
        num_frames=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        uta_output_dim=16,
        pos_embed_reference_frames=4,
        pos_embed_reference_grid=2,
        num_labels=3,
    )
    kwargs.update(overrides)
    return UMTConfig(**kwargs)


def make(model_class, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(tiny_config(**overrides)).eval()


def video(batch: int = 2, frames: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def random_mask(batch: int, num_tokens: int, num_masked: int, seed: int = 0) -> torch.Tensor:
    """A different mask per sample, each dropping exactly `num_masked` tokens (True = dropped)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for b in range(batch):
        mask[b, torch.randperm(num_tokens, generator=g)[:num_masked]] = True
    return mask


def teacher_targets(config: UMTConfig, batch: int, num_tokens: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(config.num_uta_layers, batch, num_tokens, config.uta_output_dim, generator=g)


def official_sinusoid_numpy(n_position: int, d_hid: int) -> np.ndarray:
    """`get_sinusoid_encoding_table` of the official code (official_umt.md §1.2), numpy float64."""

    def angle_vec(position):
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]

    table = np.array([angle_vec(p) for p in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table


def official_finetune_table(cur_frame: int, new_p: int, d_hid: int, ckpt_frames: int = 8, ckpt_p: int = 14):
    """The official fine-tuning rule step by step (modeling_finetune.py, official_umt.md §1.2): build the table for
    the checkpoint layout, bicubic in space, then linear in time, with the original reshapes."""
    table = torch.tensor(official_sinusoid_numpy(ckpt_frames * ckpt_p * ckpt_p, d_hid), dtype=torch.float)[None]
    if new_p != ckpt_p:
        t, p, c = ckpt_frames, ckpt_p, d_hid
        table = table.reshape(-1, t, p, p, c).reshape(-1, p, p, c).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(new_p, new_p), mode="bicubic", align_corners=False)
        table = table.permute(0, 2, 3, 1).reshape(-1, t, new_p, new_p, c).flatten(1, 3)
    if cur_frame != ckpt_frames:
        t, p, c = ckpt_frames, new_p, d_hid
        table = table.reshape(-1, t, p, p, c).permute(0, 2, 3, 4, 1).reshape(-1, c, t)
        table = F.interpolate(table, size=cur_frame, mode="linear")
        table = table.reshape(1, p, p, c, cur_frame).permute(0, 4, 1, 2, 3).flatten(1, 3)
    return table


@contextlib.contextmanager
def capture_load_messages():
    """Collect every transformers log record (at INFO and above) and every Python warning raised inside."""
    records: list[str] = []

    class _Collect(pylogging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = _Collect(level=pylogging.DEBUG)
    loggers = [hf_logging.get_logger("transformers"), hf_logging.get_logger("modeling_umt")]
    old_verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records
        records.extend(str(w.message) for w in caught)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        hf_logging.set_verbosity(old_verbosity)


LOAD_PROBLEM_WORDS = ("missing", "unexpected", "newly initialized", "load report", "mismatch", "not used", "not initialized")


def load_problems(messages: list[str]) -> list[str]:
    return [m for m in messages if any(w in m.lower() for w in LOAD_PROBLEM_WORDS)]


# ----------------------------------------------------------------------------------------------------------------
# save / load through the Auto classes
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model_class, auto_class",
    [
        (UMTVideoModel, AutoModel),
        (UMTForVideoClassification, AutoModelForVideoClassification),
        (UMTForPreTraining, AutoModelForPreTraining),
    ],
)
def test_save_load_through_auto_classes(tmp_path, model_class, auto_class):
    model = make(model_class)
    x = video()
    kwargs = {}
    if model_class is UMTForPreTraining:
        kwargs = dict(bool_masked_pos=random_mask(2, 16, 8), teacher_features=teacher_targets(model.config, 2, 16))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    assert type(AutoConfig.from_pretrained(tmp_path)) is UMTConfig

    with capture_load_messages() as messages:
        loaded, info = auto_class.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is model_class
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert load_problems(messages) == []

    loaded.eval()
    with torch.no_grad():
        a, b = model(x, **kwargs), loaded(x, **kwargs)
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_auto_model_loads_saved_encoder_without_any_report(tmp_path):
    make(UMTVideoModel).save_pretrained(tmp_path)
    with capture_load_messages() as messages:
        model = AutoModel.from_pretrained(tmp_path)
    assert type(model) is UMTVideoModel
    assert load_problems(messages) == [], messages


def test_auto_model_from_task_checkpoints_stays_quiet(tmp_path):
    # A Stage-1 student checkpoint (heads, no pooler) and a classifier checkpoint (classifier head) both load into the
    # bare encoder without warnings: heads are ignored, the pooler norm starts as identity LayerNorm by design.
    for model_class in (UMTForPreTraining, UMTForVideoClassification):
        path = tmp_path / model_class.__name__
        source = make(model_class)
        source.save_pretrained(path)
        with capture_load_messages() as messages:
            encoder = AutoModel.from_pretrained(path)
        assert type(encoder) is UMTVideoModel
        assert load_problems(messages) == [], (model_class.__name__, messages)
        src_sd, enc_sd = source.umt.state_dict(), encoder.state_dict()
        for key, value in src_sd.items():
            if not key.startswith("pooler."):
                assert torch.equal(enc_sd[key], value), key


def test_load_report_is_captured_when_weights_are_missing(tmp_path):
    # Positive control for the capture above: a bare encoder loaded as a classifier reports the new head.
    make(UMTVideoModel).save_pretrained(tmp_path)
    with capture_load_messages() as messages:
        model, info = AutoModelForVideoClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert any("classifier" in m for m in load_problems(messages))
    assert type(model) is UMTForVideoClassification


@pytest.mark.parametrize(
    "model_class, auto_key",
    [
        (UMTVideoModel, "AutoModel"),
        (UMTForVideoClassification, "AutoModelForVideoClassification"),
        (UMTForPreTraining, "AutoModelForPreTraining"),
    ],
)
def test_saved_config_has_auto_map_and_code(tmp_path, model_class, auto_key):
    make(model_class).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoConfig"] == "configuration_umt.UMTConfig"
    assert saved["auto_map"][auto_key] == f"modeling_umt.{model_class.__name__}"
    assert saved["architectures"] == [model_class.__name__]
    for name in ("configuration_umt.py", "modeling_umt.py", "losses.py"):  # what trust_remote_code needs
        assert (tmp_path / name).exists(), name


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_models_can_be_built_on_the_meta_device(model_class):
    # what `from_pretrained(device_map=...)` / accelerate's init_empty_weights do
    with torch.device("meta"):
        model = model_class(tiny_config())
    assert all(p.device.type == "meta" for p in model.parameters())


def test_pretraining_does_not_change_the_callers_config():
    config = tiny_config()
    model = UMTForPreTraining(config)
    assert model.config.use_final_norm and not config.use_final_norm
    assert UMTVideoModel(config).layernorm is None


# ----------------------------------------------------------------------------------------------------------------
# attention kernels and outputs
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", [UMTVideoModel, UMTForVideoClassification])
def test_eager_matches_sdpa(model_class):
    sdpa = make(model_class)
    assert sdpa.config._attn_implementation == "sdpa"
    eager = model_class._from_config(copy.deepcopy(sdpa.config), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert eager.config._attn_implementation == "eager"
    x = video(3)
    with torch.no_grad():
        a, b = sdpa(x), eager(x)
    for key in a.keys():
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


def test_sdpa_kernel_is_used_unless_attentions_are_requested():
    model = make(UMTVideoModel)
    x = video()
    sdpa_fn = torch.nn.functional.scaled_dot_product_attention
    with mock.patch("torch.nn.functional.scaled_dot_product_attention", side_effect=sdpa_fn) as spy:
        with torch.no_grad():
            model(x)
        assert spy.call_count == model.config.num_hidden_layers
        spy.reset_mock()
        with torch.no_grad():
            out = model(x, output_attentions=True)
        assert spy.call_count == 0  # eager for this call only
    assert len(out.attentions) == model.config.num_hidden_layers
    assert model.config._attn_implementation == "sdpa"


def test_output_attentions_with_sdpa_selected():
    sdpa = make(UMTVideoModel)
    eager = UMTVideoModel._from_config(copy.deepcopy(sdpa.config), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    x = video()
    with torch.no_grad():
        plain = sdpa(x)
        out = sdpa(x, output_attentions=True)
        ref = eager(x, output_attentions=True)
    assert len(out.attentions) == 2
    for att, ref_att in zip(out.attentions, ref.attentions):
        assert att.shape == (2, 4, 16, 16)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 16))
        torch.testing.assert_close(att, ref_att, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.last_hidden_state, plain.last_hidden_state, atol=1e-5, rtol=0)


def test_hidden_states_are_embeddings_plus_every_block():
    model = make(UMTVideoModel, num_hidden_layers=3)
    x = video()
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        assert len(out.hidden_states) == model.config.num_hidden_layers + 1
        h = model.embeddings(x)
        torch.testing.assert_close(out.hidden_states[0], h, atol=0, rtol=0)
        for i, layer in enumerate(model.encoder.layer):
            h = layer(h)
            torch.testing.assert_close(out.hidden_states[i + 1], h, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(out.pooler_output, model.pooler.norm(out.last_hidden_state.mean(1)))
    assert model(x).hidden_states is None


def test_final_norm_applies_to_last_hidden_state_only():
    model = make(UMTVideoModel, use_final_norm=True)
    with torch.no_grad():
        out = model(video(), output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, model.layernorm(out.hidden_states[-1]))


def test_return_dict_false_gives_tuples():
    model = make(UMTForVideoClassification)
    x = video()
    with torch.no_grad():
        as_dict = model(x, labels=torch.tensor([0, 2]))
        as_tuple = model(x, labels=torch.tensor([0, 2]), return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)


def test_temporal_mean_pooling():
    model = make(UMTForVideoClassification, pooling="temporal_mean")
    x = video()
    with torch.no_grad():
        enc = model.umt(x)
        logits = model(x).logits
    b, n, d = enc.last_hidden_state.shape
    per_frame = model.umt.pooler.norm(enc.last_hidden_state.view(b, 4, n // 4, d).mean(2))
    assert enc.pooler_output.shape == (2, 4, 32)
    torch.testing.assert_close(enc.pooler_output, per_frame)
    torch.testing.assert_close(logits, model.classifier(per_frame.mean(1)))


# ----------------------------------------------------------------------------------------------------------------
# token dropping (bool_masked_pos)
# ----------------------------------------------------------------------------------------------------------------
def test_masked_embeddings_keep_exactly_the_unmasked_tokens_in_order():
    model = make(UMTVideoModel)
    x, mask = video(3), random_mask(3, 16, 10)
    with torch.no_grad():
        full = model.embeddings(x)
        kept = model.embeddings(x, bool_masked_pos=mask)
    assert kept.shape == (3, 6, 32)
    for b in range(3):
        visible = (~mask[b]).nonzero().flatten()  # ascending token index
        torch.testing.assert_close(kept[b], full[b, visible], atol=0, rtol=0)


def test_masked_forward_with_no_blocks_is_the_gathered_unmasked_forward():
    model = make(UMTVideoModel, num_hidden_layers=0)
    x, mask = video(2), random_mask(2, 16, 12)
    with torch.no_grad():
        full = model(x).last_hidden_state
        masked = model(x, bool_masked_pos=mask).last_hidden_state
    torch.testing.assert_close(masked, torch.stack([full[b][~mask[b]] for b in range(2)]), atol=0, rtol=0)


def test_masked_forward_equals_blocks_on_gathered_tokens():
    model = make(UMTVideoModel)
    x, mask = video(2), random_mask(2, 16, 8)
    with torch.no_grad():
        out = model(x, bool_masked_pos=mask)
        h = gather_visible(model.embeddings(x), mask)
        for layer in model.encoder.layer:
            h = layer(h)
    assert out.last_hidden_state.shape == (2, 8, 32)
    torch.testing.assert_close(out.last_hidden_state, h, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.pooler_output, model.pooler.norm(h.mean(1)), atol=1e-6, rtol=0)


def test_all_false_mask_equals_no_mask():
    model = make(UMTVideoModel)
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, bool_masked_pos=torch.zeros(2, 16, dtype=torch.bool)).last_hidden_state,
            model(x).last_hidden_state,
        )


def test_unequal_mask_counts_raise():
    model = make(UMTVideoModel)
    mask = random_mask(2, 16, 8)
    mask[1, (~mask[1]).nonzero()[0]] = True  # sample 1 drops one more token
    with pytest.raises(ValueError, match=r"`bool_masked_pos` must mask the same number of tokens.*\[8, 7\]"):
        model(video(), bool_masked_pos=mask)


def test_mask_of_wrong_shape_raises():
    model = make(UMTVideoModel)
    with pytest.raises(ValueError, match=r"`bool_masked_pos` must have shape \(batch, num_tokens\) = \(2, 16\)"):
        model(video(), bool_masked_pos=torch.zeros(2, 15, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------------------
# batching and gradient checkpointing
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_batch_equals_one_by_one(model_class):
    model = make(model_class)
    x = video(3)
    kwargs = {"bool_masked_pos": random_mask(3, 16, 8)} if model_class is UMTForPreTraining else {}
    with torch.no_grad():
        batched = model(x, **kwargs)
        for i in range(3):
            single_kwargs = {k: v[i : i + 1] for k, v in kwargs.items()}
            single = model(x[i : i + 1], **single_kwargs)
            for key in single.keys():
                value = batched[key]
                row = value[:, i : i + 1] if key == "student_features" else value[i : i + 1]
                torch.testing.assert_close(row, single[key], atol=1e-5, rtol=1e-5, msg=key)


def _grads(model, inputs):
    model.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("model_class", [UMTForVideoClassification, UMTForPreTraining])
def test_gradient_checkpointing_gives_the_same_gradients(model_class, use_reentrant):
    model = make(model_class).train()  # all dropout / drop-path rates are 0 in the tiny config
    inputs = {"pixel_values": video()}
    if model_class is UMTForPreTraining:
        inputs.update(bool_masked_pos=random_mask(2, 16, 8), teacher_features=teacher_targets(model.config, 2, 16))
    else:
        inputs["labels"] = torch.tensor([0, 2])
    reference = _grads(model, inputs)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert all(layer.gradient_checkpointing for layer in model.umt.encoder.layer)
    calls = []
    for layer in model.umt.encoder.layer:  # count the blocks actually run through torch.utils.checkpoint
        checkpoint_fn = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _fn=checkpoint_fn, **k: calls.append(1) or _fn(*a, **k)
    checkpointed = _grads(model, inputs)
    assert len(calls) == model.config.num_hidden_layers
    assert reference.keys() == checkpointed.keys() and len(reference) > 0
    for name, grad in reference.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_checkpointing_with_frozen_patch_embedding():
    # The PEFT pattern: frozen input layer + reentrant checkpointing needs `enable_input_require_grads`.
    model = make(UMTForVideoClassification).train()
    model.umt.embeddings.requires_grad_(False)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    model(video(), labels=torch.tensor([1, 0])).loss.backward()
    grad = model.umt.encoder.layer[0].attention.query.weight.grad
    assert grad is not None and grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------
# position embeddings
# ----------------------------------------------------------------------------------------------------------------
def test_sinusoid_table_matches_the_official_numpy_formula():
    n, d = 40, 16
    table = sinusoid_table(n, d)
    assert table.dtype == torch.float32 and table.shape == (n, d)
    # bit-compatible with the official float64 numpy table cast once to float32
    assert torch.equal(table, torch.tensor(official_sinusoid_numpy(n, d), dtype=torch.float32))
    # interleaved: column 2i is sin, column 2i+1 cos of the same angle p / 10000^(2i/d)
    for p, i in [(0, 0), (1, 0), (7, 3), (39, 7), (23, 5)]:
        angle = p / np.power(10000.0, 2 * i / d)
        assert table[p, 2 * i].item() == pytest.approx(np.sin(angle), abs=1e-7)
        assert table[p, 2 * i + 1].item() == pytest.approx(np.cos(angle), abs=1e-7)
    torch.testing.assert_close(table[:, 0], torch.sin(torch.arange(n, dtype=torch.float32)))
    torch.testing.assert_close(table[:, 1], torch.cos(torch.arange(n, dtype=torch.float32)))


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_position_tables_are_not_in_state_dict(tmp_path, model_class):
    model = make(model_class)
    buffers = dict(model.named_buffers())
    assert any(name.endswith("embeddings.position_embeddings") for name in buffers)
    assert not any("position_embeddings" in key for key in model.state_dict())
    model.save_pretrained(tmp_path)
    assert not any("position_embeddings" in key for key in load_file(tmp_path / "model.safetensors"))


@pytest.mark.parametrize("rule", ["interpolated", "direct"])
def test_reference_layout_is_the_plain_table(rule):
    model = make(UMTVideoModel, position_embedding_type=rule)
    torch.testing.assert_close(model.embeddings.position_embeddings, sinusoid_table(16, 32)[None], atol=0, rtol=0)
    # the official reference layout, 8 x 14 x 14 = 1568 positions
    table = build_position_embeddings(8, (14, 14), 16, rule=rule, reference_frames=8, reference_grid=14)
    torch.testing.assert_close(table, sinusoid_table(1568, 16)[None], atol=0, rtol=0)


@pytest.mark.parametrize("frames, grid", [(16, 14), (8, 24), (16, 24), (4, 14), (12, 7)])
def test_interpolated_rule_matches_the_official_finetuning_code(frames, grid):
    ours = build_position_embeddings(frames, (grid, grid), 16, rule="interpolated", reference_frames=8, reference_grid=14)
    assert ours.shape == (1, frames * grid * grid, 16)
    torch.testing.assert_close(ours, official_finetune_table(frames, grid, 16), atol=1e-6, rtol=0)


def test_temporal_interpolation_is_linear_between_reference_frames():
    # From 2 reference frames to 4 (align_corners=False): source positions -0.25, 0.25, 0.75, 1.25 -> clamp and lerp.
    ref = build_position_embeddings(2, (2, 2), 8, rule="interpolated", reference_frames=2, reference_grid=2)[0]
    out = build_position_embeddings(4, (2, 2), 8, rule="interpolated", reference_frames=2, reference_grid=2)[0]
    f0, f1 = ref[:4], ref[4:]
    expected = torch.cat([f0, 0.75 * f0 + 0.25 * f1, 0.25 * f0 + 0.75 * f1, f1])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_direct_rule_is_the_plain_table_for_any_layout():
    table = build_position_embeddings(16, (3, 5), 8, rule="direct", reference_frames=8, reference_grid=14)
    torch.testing.assert_close(table, sinusoid_table(16 * 15, 8)[None], atol=0, rtol=0)


@pytest.mark.parametrize("frames, size", [(8, 16), (4, 32), (8, 32)])
@pytest.mark.parametrize("rule", ["interpolated", "direct"])
def test_interpolation_via_config_equals_interpolate_pos_encoding(frames, size, rule):
    base = make(UMTVideoModel, position_embedding_type=rule)
    built = UMTVideoModel(tiny_config(num_frames=frames, image_size=size, position_embedding_type=rule)).eval()
    built.load_state_dict(base.state_dict())  # the table is not a weight: same checkpoint, any layout
    n = frames * (size // 8) ** 2
    assert built.embeddings.position_embeddings.shape == (1, n, 32)
    x = video(2, frames, size)
    with torch.no_grad():
        a = base(x, interpolate_pos_encoding=True)
        b = built(x)
    assert a.last_hidden_state.shape == (2, n, 32)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-6, rtol=0)
    expected = build_position_embeddings(frames, (size // 8,) * 2, 32, rule=rule, reference_frames=4, reference_grid=2)
    torch.testing.assert_close(built.embeddings.position_embeddings, expected, atol=0, rtol=0)


def test_interpolate_pos_encoding_on_the_task_models():
    x = video(2, 8, 32)
    cls = make(UMTForVideoClassification)
    assert cls(x, interpolate_pos_encoding=True).logits.shape == (2, 3)
    pre = make(UMTForPreTraining)
    out = pre(x, bool_masked_pos=random_mask(2, 128, 96), interpolate_pos_encoding=True)
    assert out.student_features.shape == (2, 2, 32, 16)


@pytest.mark.parametrize(
    "shape, pattern",
    [
        ((2, 8, 3, 16, 16), r"`pixel_values` has 8 frames of 16x16 but the model was built for 4 frames of 16x16; "
                            r"pass `interpolate_pos_encoding=True`"),
        ((2, 4, 3, 32, 32), r"`pixel_values` has 4 frames of 32x32 .*interpolate_pos_encoding=True"),
        ((2, 4, 3, 20, 16), r"`pixel_values` frames/height/width \(4, 20, 16\) must be multiples"),
        ((2, 4, 1, 16, 16), r"`pixel_values` must have shape \(batch, frames, 3, height, width\)"),
        ((2, 3, 16, 16), r"`pixel_values` must have shape"),
    ],
)  # fmt: skip
def test_mismatched_pixel_values_raise(shape, pattern):
    model = make(UMTVideoModel)
    with pytest.raises(ValueError, match=pattern):
        model(torch.zeros(shape))


# ----------------------------------------------------------------------------------------------------------------
# classification head: losses and init
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("problem_type", [None, "single_label_classification", "multi_label_classification", "regression"])
def test_classification_losses_and_backward(problem_type):
    num_labels = 1 if problem_type == "regression" else 3
    model = make(UMTForVideoClassification, problem_type=problem_type, num_labels=num_labels).train()
    x = video()
    if problem_type == "multi_label_classification":
        labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    elif problem_type == "regression":
        labels = torch.tensor([0.5, -1.0])
    else:
        labels = torch.tensor([2, 0])
    out = model(x, labels=labels)
    if problem_type == "multi_label_classification":
        expected = F.binary_cross_entropy_with_logits(out.logits, labels)
    elif problem_type == "regression":
        expected = F.mse_loss(out.logits.squeeze(-1), labels)
    else:
        expected = F.cross_entropy(out.logits, labels)
    assert out.logits.shape == (2, num_labels)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    for name in ("classifier.weight", "umt.pooler.norm.weight", "umt.embeddings.patch_embeddings.projection.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def _head_stats(model):
    w = model.classifier.weight.detach()
    return w.std().item(), w.mean().item(), model.classifier.bias.detach()


def test_head_init_is_scaled_truncated_normal(tmp_path):
    model = make(UMTForVideoClassification, hidden_size=64, num_labels=200)
    std, mean, bias = _head_stats(model)
    assert std == pytest.approx(0.02 * 0.001, rel=0.05) and abs(mean) < 2e-6 and torch.all(bias == 0)
    # the rest of the model keeps the plain truncated normal (std 0.02)
    assert model.umt.encoder.layer[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    # the same init when the head is created while loading an encoder checkpoint
    make(UMTVideoModel, hidden_size=64).save_pretrained(tmp_path)
    loaded = UMTForVideoClassification.from_pretrained(tmp_path, num_labels=200)
    std, mean, bias = _head_stats(loaded)
    assert std == pytest.approx(0.02 * 0.001, rel=0.05) and torch.all(bias == 0)
    # and the scale is configurable
    std, _, _ = _head_stats(make(UMTForVideoClassification, hidden_size=64, num_labels=200, head_init_scale=1.0))
    assert std == pytest.approx(0.02, rel=0.05)


def test_no_labels_gives_identity_head():
    model = make(UMTForVideoClassification, num_labels=0)
    assert model(video()).logits.shape == (2, 32)


# ----------------------------------------------------------------------------------------------------------------
# stochastic depth
# ----------------------------------------------------------------------------------------------------------------
def test_drop_path_rates_follow_linspace():
    model = make(UMTVideoModel, num_hidden_layers=3, drop_path_rate=0.2)
    layers = model.encoder.layer
    assert isinstance(layers[0].drop_path, torch.nn.Identity)
    assert [layers[i].drop_path.p for i in (1, 2)] == pytest.approx([0.1, 0.2])


def test_drop_path_is_active_only_in_train_mode():
    x = video(8)
    with_dp = make(UMTVideoModel, drop_path_rate=0.5)
    without = make(UMTVideoModel)
    without.load_state_dict(with_dp.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(with_dp(x).last_hidden_state, without(x).last_hidden_state, atol=0, rtol=0)
        with_dp.train(), without.train()
        torch.manual_seed(0)
        a = with_dp(x).last_hidden_state
        torch.manual_seed(1)
        b = with_dp(x).last_hidden_state
        ref = without(x).last_hidden_state  # no dropout anywhere else: train mode == eval mode
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, ref)
    with torch.no_grad():
        torch.testing.assert_close(ref, without.eval()(x).last_hidden_state)


def test_drop_path_zeroes_whole_samples_and_rescales():
    torch.manual_seed(0)
    out = drop_path(torch.ones(64, 5, 3), p=0.25, training=True)
    per_sample = out.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(drop_path(torch.ones(4, 2), p=0.25, training=False), torch.ones(4, 2))
    assert "p=0.3" in repr(UMTDropPath(0.3))


# ----------------------------------------------------------------------------------------------------------------
# Stage-1 student (UMTForPreTraining)
# ----------------------------------------------------------------------------------------------------------------
def _pretraining_case(**overrides):
    model = make(UMTForPreTraining, **overrides)
    x, mask = video(2), random_mask(2, 16, 10)
    teacher = teacher_targets(model.config, 2, 16)
    return model, x, mask, teacher


def test_pretraining_loss_equals_uta_loss_per_layer():
    model, x, mask, teacher = _pretraining_case(num_hidden_layers=3)
    with torch.no_grad():
        out = model(x, bool_masked_pos=mask, teacher_features=teacher)
    k = model.config.num_uta_layers
    gathered = torch.stack([torch.stack([teacher[i, b][~mask[b]] for b in range(2)]) for i in range(k)])
    assert out.student_features.shape == (k, 2, 6, 16) and out.uta_loss_per_layer.shape == (k,)
    torch.testing.assert_close(out.loss, uta_loss(out.student_features, gathered))
    torch.testing.assert_close(out.loss, out.uta_loss_per_layer.mean())
    for i in range(k):
        torch.testing.assert_close(out.uta_loss_per_layer[i], uta_loss(out.student_features[i : i + 1], gathered[i : i + 1]))
    # and by hand: mean(2 - 2 cos) over layers, batch and visible tokens
    cos = F.cosine_similarity(out.student_features, gathered, dim=-1)
    torch.testing.assert_close(out.loss, (2 - 2 * cos).mean())


def test_pretraining_full_and_pregathered_teacher_give_the_same_loss():
    model, x, mask, teacher = _pretraining_case()
    gathered = torch.stack([gather_visible(teacher[i], mask) for i in range(teacher.shape[0])])
    with torch.no_grad():
        full = model(x, bool_masked_pos=mask, teacher_features=teacher)
        pre = model(x, bool_masked_pos=mask, teacher_features=gathered)
    torch.testing.assert_close(full.loss, pre.loss, atol=0, rtol=0)
    torch.testing.assert_close(full.uta_loss_per_layer, pre.uta_loss_per_layer, atol=0, rtol=0)


def test_pretraining_features_follow_the_official_recipe():
    # outputs of the aligned blocks -> shared final norm -> + sin-cos table at the visible positions -> Linear ->
    # LayerNorm -> L2 (official_umt.md §1.4)
    model, x, mask, _ = _pretraining_case(num_hidden_layers=3, uta_num_layers=2)
    assert model.config.uta_layer_indices == [1, 2]
    with torch.no_grad():
        out = model(x, bool_masked_pos=mask, output_hidden_states=True)
        positions = gather_visible(sinusoid_table(16, 32)[None].expand(2, -1, -1), mask)
        for k, layer_idx in enumerate(model.config.uta_layer_indices):
            h = model.umt.layernorm(out.hidden_states[layer_idx + 1]) + positions
            head = model.uta_heads[k]
            expected = F.normalize(head.norm(head.dense(h)), dim=-1)
            torch.testing.assert_close(out.student_features[k], expected, atol=1e-6, rtol=0)
    assert len(out.hidden_states) == 4 and out.hidden_states[0].shape == (2, 6, 32)
    torch.testing.assert_close(out.last_hidden_state, model.umt.layernorm(out.hidden_states[-1]))


def test_pretraining_heads_are_l2_normalised():
    model, x, mask, _ = _pretraining_case()
    with torch.no_grad():
        features = model(x, bool_masked_pos=mask).student_features
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(features.shape[:-1]))
    unnormalised, _, _, _ = _pretraining_case(uta_l2_normalize=False)
    with torch.no_grad():
        features = unnormalised(x, bool_masked_pos=mask).student_features
    assert not torch.allclose(features.norm(dim=-1), torch.ones(features.shape[:-1]))


def test_pretraining_without_teacher_or_mask():
    model, x, mask, teacher = _pretraining_case()
    with torch.no_grad():
        out = model(x)
        assert out.loss is None and out.uta_loss_per_layer is None
        assert out.student_features.shape == (2, 2, 16, 16)
        assert model(x, teacher_features=teacher).loss.ndim == 0


def test_pretraining_rejects_misshaped_teacher_features():
    model, x, mask, teacher = _pretraining_case()
    with pytest.raises(ValueError, match=r"`teacher_features` must have shape \(2, 2, 6, 16\)"):
        model(x, bool_masked_pos=mask, teacher_features=teacher[..., :8])


def test_pretraining_attentions_and_gradients():
    model, x, mask, teacher = _pretraining_case()
    out = model.train()(x, bool_masked_pos=mask, teacher_features=teacher, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 6, 6)
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad


# ----------------------------------------------------------------------------------------------------------------
# MLP activation recompute (memory saving while training)
# ----------------------------------------------------------------------------------------------------------------
def _mlp_grads(recompute: bool, autocast_dtype=None):
    from modeling_umt.modeling_umt import UMTMLP

    torch.manual_seed(0)
    mlp = UMTMLP(tiny_config(hidden_size=16, intermediate_size=64))
    x = torch.randn(3, 10, 16, requires_grad=True)
    with mock.patch.object(UMTMLP, "recompute_activation", recompute):
        ctx = torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with ctx:
            out = mlp(x)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach().float(), x.grad, {n: p.grad for n, p in mlp.named_parameters()}


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_mlp_activation_recompute_gives_the_same_outputs_and_gradients(autocast_dtype):
    out_a, gx_a, gp_a = _mlp_grads(False, autocast_dtype)
    out_b, gx_b, gp_b = _mlp_grads(True, autocast_dtype)
    tol = 1e-6 if autocast_dtype is None else 2e-2
    assert torch.allclose(out_a, out_b, atol=tol)
    assert torch.allclose(gx_a, gx_b, atol=tol)
    for name in gp_a:
        assert gp_b[name].dtype == torch.float32
        assert torch.allclose(gp_a[name], gp_b[name], atol=tol * 10), name


def test_mlp_activation_recompute_keeps_one_hidden_tensor_for_backward():
    from modeling_umt.modeling_umt import UMTMLP

    mlp = UMTMLP(tiny_config(hidden_size=16, intermediate_size=64))
    x = torch.randn(2, 5, 16, requires_grad=True)

    def saved_hidden(recompute):
        storages = set()

        def pack(t):
            if t.numel() == 2 * 5 * 64:  # a hidden (B, N, 4D) activation, however autograd viewed it
                storages.add(t.untyped_storage().data_ptr())
            return t

        with mock.patch.object(UMTMLP, "recompute_activation", recompute):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                mlp(x)
        return len(storages)

    assert saved_hidden(False) == 2  # GELU input (for its derivative) and output (for fc2's weight gradient)
    assert saved_hidden(True) == 1


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_saved_remote_code_needs_only_torch_and_transformers(tmp_path, model_class):
    """A saved folder's model code (what `trust_remote_code=True` runs on a machine without this package) imports
    nothing a transformers user lacks: transformers checks every import of the copied files and refuses to load
    when one is missing (timm, processors, ...)."""
    from transformers.dynamic_module_utils import get_imports

    make(model_class).save_pretrained(tmp_path)
    copied = sorted(tmp_path.glob("*.py"))
    assert copied
    needed = set().union(*(get_imports(path) for path in copied)) - set(sys.stdlib_module_names)
    assert needed <= {"torch", "transformers", "huggingface_hub", "safetensors", "numpy"}, needed
