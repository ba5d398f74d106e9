"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) run against the UMT models.

The mixins ship in the transformers sdist, not the wheel; `tests/_hf_common.py` fetches them from PyPI into a
git-ignored cache on first use. Without network (and no cache) this module is skipped with the reason.
Tests that do not apply to UMT are skipped below, each with a one-line reason.
"""

from __future__ import annotations

import contextlib
import copy
import unittest
import warnings
from unittest import mock

import pytest
import torch
from torch import nn
from transformers.models.auto import modeling_auto

from _hf_common import HFCommonUnavailable, load_hf_common

try:
    with warnings.catch_warnings():  # transformers' custom pytest marks (slow, flash_attn_test, ...) are unregistered here
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        test_modeling_common, test_configuration_common = load_hf_common()
except HFCommonUnavailable as err:  # pragma: no cover - depends on network / cache
    pytest.skip(f"transformers' common tests unavailable: {err}", allow_module_level=True)

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification, UMTVideoModel  # noqa: E402

ModelTesterMixin = test_modeling_common.ModelTesterMixin
floats_tensor = test_modeling_common.floats_tensor
ids_tensor = test_modeling_common.ids_tensor
ConfigTester = test_configuration_common.ConfigTester


class UMTModelTester:
    """Tiny UMT (tubelet 1, no class token): 3 clips of 4 frames at 16x16 px, patch 8 -> 4 x 2 x 2 = 16 tokens."""

    def __init__(
        self,
        parent,
        batch_size=3,
        image_size=16,
        patch_size=8,
        num_channels=3,
        num_frames=4,
        tubelet_size=1,
        is_training=True,
        use_labels=True,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        type_sequence_label_size=10,
        initializer_range=0.02,
        uta_output_dim=16,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.is_training = is_training
        self.use_labels = use_labels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.uta_output_dim = uta_output_dim
        self.num_patches_per_frame = (image_size // patch_size) ** 2
        self.num_tokens = (num_frames // tubelet_size) * self.num_patches_per_frame
        self.seq_length = self.num_tokens  # tokens the blocks see; the masked pre-training tests lower it
        self.num_masks = self.num_tokens // 2

    def get_config(self) -> UMTConfig:
        return UMTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            num_frames=self.num_frames,
            tubelet_size=self.tubelet_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            uta_output_dim=self.uta_output_dim,
            num_labels=self.type_sequence_label_size,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor(
            [self.batch_size, self.num_frames, self.num_channels, self.image_size, self.image_size]
        )
        labels = ids_tensor([self.batch_size], self.type_sequence_label_size) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def bool_masked_pos(self, batch_size: int | None = None) -> torch.Tensor:
        """The same random-looking mask for every sample (UMT needs equal visible counts across the batch)."""
        mask = torch.arange(self.num_tokens) % 2 == 1  # drop every other token: num_masks = num_tokens // 2
        return mask.expand(batch_size or self.batch_size, -1).clone()

    def create_and_check_model(self, config, pixel_values, labels):
        model = UMTVideoModel(config).eval()
        with torch.no_grad():
            result = model(pixel_values)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, self.hidden_size))

    def create_and_check_for_video_classification(self, config, pixel_values, labels):
        model = UMTForVideoClassification(config).eval()
        with torch.no_grad():
            result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))

    def create_and_check_for_pretraining(self, config, pixel_values, labels):
        model = UMTForPreTraining(config).eval()
        mask = self.bool_masked_pos()
        k = config.num_uta_layers
        teacher = torch.randn(k, self.batch_size, self.num_tokens, self.uta_output_dim)
        with torch.no_grad():
            result = model(pixel_values, bool_masked_pos=mask, teacher_features=teacher)
        n_vis = self.num_tokens - self.num_masks
        self.parent.assertEqual(result.student_features.shape, (k, self.batch_size, n_vis, self.uta_output_dim))
        self.parent.assertEqual(result.loss.ndim, 0)


class UMTModelTest(ModelTesterMixin, unittest.TestCase):
    """ModelTesterMixin over the three UMT classes (the bare encoder, the classifier and the Stage-1 student)."""

    all_model_classes = (UMTVideoModel, UMTForVideoClassification, UMTForPreTraining)
    test_resize_embeddings = False  # no token embeddings (Conv3d patch embedding)
    has_attentions = True
    # The mixin dates a model by the "# Copyright YYYY" line of its config file (UMT's has none -> "before 2023" ->
    # skipped); UMT's `_init_weights` must cover every weight and buffer, so run the check.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls):
        # Many common tests pick models by transformers' own name mappings (base models are left out of the training
        # tests, the base checkpoint must load into the heads, classifiers get labels, ...). UMT is registered out of
        # tree, so it is added to those mappings for the duration of this class, as if it were in the library.
        super().setUpClass()
        cls._mapping_patches = [
            mock.patch.dict(modeling_auto.MODEL_MAPPING_NAMES, {"umt": "UMTVideoModel"}),
            mock.patch.dict(modeling_auto.MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES, {"umt": "UMTForVideoClassification"}),
            mock.patch.dict(modeling_auto.MODEL_FOR_PRETRAINING_MAPPING_NAMES, {"umt": "UMTForPreTraining"}),
        ]
        for patch in cls._mapping_patches:
            patch.start()

    @classmethod
    def tearDownClass(cls):
        for patch in cls._mapping_patches:
            patch.stop()
        super().tearDownClass()

    def setUp(self):
        self.model_tester = UMTModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=UMTConfig, has_text_modality=False, hidden_size=32, num_attention_heads=4
        )

    # ---- inputs ---------------------------------------------------------------------------------------------
    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        batch_size = inputs_dict["pixel_values"].shape[0]
        if model_class is UMTForPreTraining:
            inputs_dict["bool_masked_pos"] = self.model_tester.bool_masked_pos(batch_size).to(
                inputs_dict["pixel_values"].device
            )
            if return_labels:  # seeded, so that repeated calls (tuple vs dict outputs) get the same targets
                config = self.model_tester.get_config()
                shape = (config.num_uta_layers, batch_size, self.model_tester.num_tokens, self.model_tester.uta_output_dim)
                teacher = torch.randn(shape, generator=torch.Generator().manual_seed(0))
                inputs_dict["teacher_features"] = teacher.to(inputs_dict["pixel_values"].device)
        return inputs_dict

    @contextlib.contextmanager
    def _single_model_class(self, model_class):
        """Run a common test for one class; UMTForPreTraining sees only the visible tokens of its masked input."""
        saved_classes, saved_len = self.all_model_classes, self.model_tester.seq_length
        self.all_model_classes = (model_class,)
        if model_class is UMTForPreTraining:
            self.model_tester.seq_length = self.model_tester.num_tokens - self.model_tester.num_masks
        try:
            yield
        finally:
            self.all_model_classes, self.model_tester.seq_length = saved_classes, saved_len

    # ---- model-specific checks ------------------------------------------------------------------------------
    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_video_classification(self):
        self.model_tester.create_and_check_for_video_classification(*self.model_tester.prepare_config_and_inputs())

    def test_for_pretraining(self):
        self.model_tester.create_and_check_for_pretraining(*self.model_tester.prepare_config_and_inputs())

    # ---- common tests adapted to a model without token embeddings -------------------------------------------
    def test_model_get_set_embeddings(self):
        # The input "embedding" is the Conv3d patch embedding, not an nn.Embedding (as VideoMAE's own override).
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            self.assertIsInstance(model.get_input_embeddings().projection, nn.Conv3d)
            x = model.get_output_embeddings()
            self.assertTrue(x is None or isinstance(x, nn.Linear))

    # ---- common tests run per class: the masked pre-training input has fewer tokens ------------------------
    def test_attention_outputs(self):
        for model_class in self.all_model_classes:
            with self.subTest(model_class.__name__), self._single_model_class(model_class):
                super().test_attention_outputs()

    def test_hidden_states_output(self):
        for model_class in self.all_model_classes:
            with self.subTest(model_class.__name__), self._single_model_class(model_class):
                super().test_hidden_states_output()

    # ---- stand-in for transformers' ExportTesterMixin (tests/exporters/ is not in the sdist) -----------------
    def test_torch_export(self):
        # Unmasked forward only: dropping tokens has a data-dependent shape (and a data-dependent equal-count check).
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        pixel_values = inputs_dict["pixel_values"]
        for model_class in self.all_model_classes:
            with self.subTest(model_class.__name__):
                model = model_class(copy.deepcopy(config)).eval()
                exported = torch.export.export(model, args=(pixel_values,), strict=False)
                with torch.no_grad():
                    expected, got = model(pixel_values), exported.module()(pixel_values)
                for key, value in expected.items():
                    torch.testing.assert_close(got[key], value, msg=key)

    # ---- common tests that do not apply to UMT (each says why) ------------------------------------------------
    def test_inputs_embeds(self):
        self.skipTest("no token embeddings: UMT takes pixel_values through a Conv3d patch embedding")

    def test_inputs_embeds_matches_input_ids(self):
        self.skipTest("no input_ids / inputs_embeds: UMT takes pixel_values only")

    def test_resize_tokens_embeddings(self):
        self.skipTest("no token embeddings (vocabulary) to resize")

    def test_resize_embeddings_untied(self):
        self.skipTest("no token embeddings (vocabulary) to resize")

    def test_resize_embeddings_untied_no_reinit_on_post_init(self):
        self.skipTest("no token embeddings (vocabulary) to resize")

    def test_resize_position_vector_embeddings(self):
        self.skipTest("the sin-cos table is fixed and rebuilt per layout (interpolate_pos_encoding), not an nn.Embedding")

    def test_feed_forward_chunking(self):
        self.skipTest("UMT does not chunk its MLP; config.chunk_size_feed_forward is unused")

    def test_enable_input_require_grads_with_gradient_checkpointing(self):
        self.skipTest(
            "get_input_embeddings() is the patch-embedding wrapper with no .weight (as VideoMAE), so the mixin finds "
            "nothing to check; test_modeling_umt.py::test_gradient_checkpointing_with_frozen_patch_embedding covers it"
        )

    def test_problem_types(self):
        self.skipTest(
            "the mixin only picks sequence/image classifiers; test_modeling_umt.py::"
            "test_classification_losses_and_backward covers the three problem types for the video classifier"
        )

    def test_load_with_mismatched_shapes(self):
        self.skipTest(
            "the mixin only picks sequence classifiers; test_can_load_ignoring_mismatched_shapes covers the video "
            "classifier's head"
        )

    def test_sdpa_can_dispatch_composite_models(self):
        self.skipTest("UMT is not a composite model; test_sdpa_can_dispatch_non_composite_models covers it")
