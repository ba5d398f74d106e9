"""The figure module: loss curves from Trainer logs and the semantic-mask picture from a teacher's attention."""

import json

import pytest
import torch

from modeling_umt.masking import semantic_mask
from modeling_umt.teachers import UMTTeacher, build_teacher
from modeling_umt.visualization import (
    load_clips,
    loss_terms,
    main,
    plot_loss_curves,
    plot_semantic_masks,
    read_log_history,
    teacher_mask,
)
from processors.synthetic import SyntheticConfig, encode_mp4, render_clip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_state(directory, history):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


HISTORY = [
    {"step": 10, "loss": 2.0, "loss_vtc": 1.5, "loss_vtm": 0.5, "learning_rate": 1e-4, "grad_norm": 3.0},
    {"step": 20, "loss": 1.0, "loss_vtc": 0.7, "loss_vtm": 0.3, "learning_rate": 2e-4, "grad_norm": 2.0},
    {"step": 20, "eval_loss": 1.2},
    {"step": 20, "train_loss": 1.5, "train_runtime": 9.0},
]


def test_loss_terms_keep_losses_and_skip_other_logs():
    curves = loss_terms(HISTORY)
    assert set(curves) == {"loss", "loss_vtc", "loss_vtm", "eval_loss"}  # not lr, grad_norm, the train summary
    assert curves["loss"] == ([10, 20], [2.0, 1.0])
    assert curves["eval_loss"] == ([20], [1.2])


def test_log_history_falls_back_to_the_newest_checkpoint(tmp_path):
    _write_state(tmp_path / "run" / "checkpoint-5", [{"step": 5, "loss": 9.0}])
    _write_state(tmp_path / "run" / "checkpoint-40", [{"step": 40, "loss": 1.0}])
    _write_state(tmp_path / "run" / "checkpoint-100", [{"step": 100, "loss": 0.5}])  # 100 > 40 although "1" < "4"
    assert read_log_history(tmp_path / "run")[0]["step"] == 100
    _write_state(tmp_path / "run", HISTORY)  # a finished run's own state wins
    assert read_log_history(tmp_path / "run") == HISTORY
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        read_log_history(tmp_path / "nothing")


def test_plot_loss_curves_writes_a_png_per_call(tmp_path):
    _write_state(tmp_path / "s1", [{"step": 1, "loss": 1.0, "uta_layer_3": 1.1}, {"step": 2, "loss": 0.5}])
    _write_state(tmp_path / "s2", HISTORY)
    out = plot_loss_curves({"Stage 1": tmp_path / "s1", "Stage 2": tmp_path / "s2"}, tmp_path / "fig" / "c.png")
    assert _is_png(out)
    assert not list((tmp_path / "fig").glob(".*tmp*"))  # written atomically: no temporary file left
    _write_state(tmp_path / "empty", [{"step": 1, "learning_rate": 0.1}])
    with pytest.raises(ValueError, match="logged no loss"):
        plot_loss_curves({"x": tmp_path / "empty"}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_loss_curves({}, tmp_path / "e.png")


def test_teacher_mask_is_the_semantic_mask_on_the_teachers_grid():
    teacher = build_teacher("tiny-random", num_return_layers=1, image_size=32, patch_size=8)
    clips = torch.randn(2, 3, 3, 32, 32)
    attention, mask = teacher_mask(clips, teacher, mask_ratio=0.75, seed=3)
    assert attention.shape == mask.shape == (2, 3, 4, 4)
    assert ((~mask).sum(dim=(-1, -2)) == 4).all()  # 16 - int(16 * 0.75) kept in every frame
    expected = semantic_mask(teacher(clips).cls_attention, 0.75, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask.flatten(1), expected)


def test_tiny_random_teacher_is_the_same_every_time_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = build_teacher("tiny-random", num_return_layers=2, image_size=32, patch_size=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_teacher("tiny-random", num_return_layers=2, image_size=32, patch_size=8)
    assert isinstance(a, UMTTeacher) and a.num_patches == 16
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz_videos")
    config = SyntheticConfig(num_videos=2, num_frames=8, size=32)
    paths = []
    for i in range(2):
        frames, _ = render_clip(i, config)
        path = root / f"clip{i}.mp4"
        encode_mp4(frames, path, codec="mpeg4")
        paths.append(path)
    return paths


def test_semantic_mask_figure_from_video_files(tmp_path, videos):
    clips = load_clips(videos, num_frames=4, image_size=32)
    assert clips.shape == (2, 4, 3, 32, 32)
    teacher = build_teacher("tiny-random", num_return_layers=1, image_size=32, patch_size=8)
    out = plot_semantic_masks(clips, teacher, tmp_path / "masks.png", titles=["a", "b"])
    assert _is_png(out)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        plot_semantic_masks(clips[0], teacher, tmp_path / "bad.png")


def test_command_line_writes_both_figures(tmp_path, videos):
    _write_state(tmp_path / "run", HISTORY)
    curves = main(["curves", "--run", f"Stage 2={tmp_path / 'run'}", "--output", str(tmp_path / "c.png")])
    masks = main(["masks", "--videos", *map(str, videos), "--teacher", "tiny-random", "--image_size", "32",
                  "--patch_size", "8", "--num_frames", "4", "--output", str(tmp_path / "m.png")])
    assert _is_png(curves) and _is_png(masks)


def test_highlight_keeps_kept_patches_and_dims_dropped_ones():
    from modeling_umt.visualization import highlight_kept

    images = torch.rand(1, 2, 8, 8, 3)
    mask = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 1] = True  # frame 0: top-right 4x4 patch dropped
    mask[0, 1, 1, 0] = True  # frame 1: bottom-left
    shown = highlight_kept(images, mask, dim=0.25)
    assert torch.allclose(shown[0, 0, :4, 4:], 0.25 * images[0, 0, :4, 4:])
    assert torch.equal(shown[0, 0, 4:], images[0, 0, 4:]) and torch.equal(shown[0, 0, :4, :4], images[0, 0, :4, :4])
    assert torch.allclose(shown[0, 1, 4:, :4], 0.25 * images[0, 1, 4:, :4])
    assert torch.equal(shown[0, 1, :4], images[0, 1, :4])
