"""AVA frame-mAP (`modeling_umt.detection_evaluation`): hand-computed cases, and agreement to 1e-6 with an independent
implementation -- mmaction2's numpy AVA evaluation (`ava_evaluation/{metrics,np_box_list,np_box_ops}.py`, loaded by
file path: importing `mmaction` needs mmcv) -- on fixed random predictions."""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from modeling_umt.detection_evaluation import (
    ava_frame_map_metrics, box_iou, frame_average_precision, voc_average_precision,
)
from processors.decoding import DecodeStats
from processors.detection import read_ava_annotations, read_ava_exclusions
from processors.rows import BadRowError, RowCheck


def test_iou_has_no_plus_one():
    assert box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]])[0, 0] == pytest.approx(2 / 6)


def test_voc_ap_hand_computed():
    # ranked hits T F T with 3 ground truths: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3 -> envelope
    # 1 on (0, 1/3], 2/3 on (1/3, 2/3]: AP = 1/3 + 2/9
    ap = voc_average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3)
    assert ap == pytest.approx(1 / 3 + 2 / 9)
    assert math.isnan(voc_average_precision(np.array([0.5]), np.array([False]), 0))
    assert voc_average_precision(np.zeros(0), np.zeros(0, dtype=bool), 2) == 0.0


def test_frame_map_matching_rules_hand_computed():
    gt = {"v,0001": (np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]), np.array([1, 1])),
          "v,0002": (np.array([[0, 0, 1, 1]]), np.array([2])),
          "v,0003": (np.array([[0, 0, 1, 1]]), np.array([1]))}
    det = {
        # class 1: the best detection hits box 0; the second also overlaps box 0 most (already taken) -> FP even
        # though nothing else is matched; the third hits box 1 exactly at IoU 0.5 -> TP
        "v,0001": (np.array([[0, 0, 0.5, 0.5], [0, 0, 0.45, 0.5], [0.5, 0.5, 1, 0.75]]), np.array([1, 1, 1]),
                   np.array([0.9, 0.8, 0.7])),
        "v,0002": (np.array([[0, 0, 1, 1]]), np.array([3]), np.array([0.99])),  # class 3 has no GT: ignored
        "v,0004": (np.array([[0, 0, 1, 1]]), np.array([2]), np.array([0.95])),  # frame without GT: FP for class 2
        "v,0003": (np.array([[0, 0, 1, 1]]), np.array([1]), np.array([0.95])),  # excluded below
    }
    result = frame_average_precision(gt, det, class_ids=[1, 2, 3], excluded={"v,0003"})
    assert result["num_groundtruth"] == {1: 2, 2: 1, 3: 0}
    assert result["AP"][1] == pytest.approx(0.5 + 0.5 * 2 / 3)  # T F T over 2 GT
    assert result["AP"][2] == 0.0  # its only detection is in a frame without ground truth
    assert math.isnan(result["AP"][3])
    assert result["mAP"] == pytest.approx((0.5 + 1 / 3 + 0.0) / 2)
    ignoring = frame_average_precision(gt, det, class_ids=[1, 2], excluded={"v,0003"}, ignore_empty_frames=True)
    assert ignoring["AP"][2] == 0.0  # no detection left for class 2, one GT
    # with frame 3 back: T T F T over 3 GT -> precision envelope 1, 1, 3/4 over recall thirds
    assert frame_average_precision(gt, det, class_ids=[1])["AP"][1] == pytest.approx(1 / 3 + 1 / 3 + 1 / 3 * 3 / 4)


def _load_mmaction_numpy():
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mmaction2 is not installed (the independent AVA evaluation this test compares with)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "evaluation" / "functional" / "ava_evaluation"
    modules = {}
    for name in ("metrics", "np_box_list", "np_box_ops"):
        module_spec = importlib.util.spec_from_file_location(f"_mmaction_ava_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        modules[name] = module
    return modules


def mmaction_frame_map(gt, det, classes, threshold=0.5):
    """mmaction2's AVA procedure with its numpy pieces: per frame, detections sorted by descending score, each
    matched to its highest-IoU GT box of the class (np_box_ops.iou on y1 x1 y2 x2 boxes), then metrics'
    precision / recall and VOC AP per class, nan-mean."""
    mm = _load_mmaction_numpy()
    scores, tpfp = defaultdict(list), defaultdict(list)
    num_gt = {c: int(sum((labels == c).sum() for _, labels in gt.values())) for c in classes}
    for key, (boxes, labels, sc) in det.items():
        gt_boxes, gt_labels = gt[key]
        for c in classes:
            sel = labels == c
            if not sel.any():
                continue
            order = np.argsort(-sc[sel], kind="stable")
            d = mm["np_box_list"].BoxList(boxes[sel][order][:, [1, 0, 3, 2]].astype(np.float32))
            g = gt_boxes[gt_labels == c][:, [1, 0, 3, 2]].astype(np.float32)
            flags = np.zeros(len(order), dtype=bool)
            if len(g):
                iou = mm["np_box_ops"].iou(d.get(), g)
                best, taken = iou.argmax(1), np.zeros(len(g), dtype=bool)
                for i in range(len(order)):
                    if iou[i, best[i]] >= threshold and not taken[best[i]]:
                        flags[i] = taken[best[i]] = True
            scores[c].append(sc[sel][order])
            tpfp[c].append(flags)
    aps = {}
    for c in classes:
        if c not in scores:
            aps[c] = 0.0 if num_gt[c] else float("nan")
            continue
        precision, recall = mm["metrics"].compute_precision_recall(np.concatenate(scores[c]),
                                                                   np.concatenate(tpfp[c]), num_gt[c])
        aps[c] = mm["metrics"].compute_average_precision(precision, recall)
    return float(np.nanmean(list(aps.values()))), aps


def test_agrees_with_mmaction2_numpy_ava_evaluation_on_fixed_predictions():
    rng = np.random.default_rng(0)
    classes = [1, 2, 3, 5, 8]
    gt, det = {}, {}
    for f in range(40):
        key = f"vid{f % 4},{900 + f:04d}"
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 0.6, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.15, 0.4, (n, 2))], 1).clip(0, 1)
        labels = rng.choice(classes, n)
        gt[key] = (boxes, labels)
        m = int(rng.integers(2, 9))
        pick = rng.integers(0, n, m)
        noisy = (boxes[pick] + rng.normal(0, 0.06, (m, 4))).clip(0, 1)
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 0.01)
        det_labels = np.where(rng.random(m) < 0.7, labels[pick], rng.choice(classes, m))
        det[key] = (noisy, det_labels, rng.random(m))  # distinct random scores: no ties
    ours = frame_average_precision(gt, det, classes)
    theirs_map, theirs = mmaction_frame_map(gt, det, classes)
    for c in classes:
        assert abs(ours["AP"][c] - theirs[c]) <= 1e-6, (c, ours["AP"][c], theirs[c])
    print(f"frame mAP ours {ours['mAP']:.6f} mmaction2 {theirs_map:.6f} max|diff| "
          f"{max(abs(ours['AP'][c] - theirs[c]) for c in classes):.2e}")
    assert abs(ours["mAP"] - theirs_map) <= 1e-6
    assert 0.05 < ours["mAP"] < 0.95  # a non-degenerate case


def test_frame_map_metrics_read_the_files_or_take_them_read_once(tmp_path):
    gt = tmp_path / "val.csv"
    gt.write_text("v,0902,0.1,0.1,0.5,0.5,1,0\nv,0902,0.6,0.6,0.9,0.9,2,1\nv,0903,0.1,0.1,0.5,0.5,3,0\n"
                  "v,0904,0.1,0.1,0.5,0.5,1,0\nv,0905,0.1,0.1,0.5,0.5,1,\n")  # last line: no person id
    (tmp_path / "excluded.csv").write_text("v,0904\n")
    label_map = {1: "a", 2: "b"}
    detections = {"v,0902": (np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]), np.array([1, 1]),
                             np.array([0.9, 0.8])),
                  "v,0904": (np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([1]), np.array([0.3]))}
    with pytest.raises(BadRowError, match=r"val.csv, line 5, column 'person_id'"):
        ava_frame_map_metrics(str(gt), label_map, str(tmp_path / "excluded.csv"))
    stats = DecodeStats()
    from_files = ava_frame_map_metrics(str(gt), label_map, str(tmp_path / "excluded.csv"),
                                       check=RowCheck(stats=stats))(detections)
    assert stats.skipped_by_reason() == {"missing value": 1}
    once = ava_frame_map_metrics(read_ava_annotations(gt, check=RowCheck()), label_map,
                                 read_ava_exclusions(tmp_path / "excluded.csv"))(detections)
    assert once == from_files
    # a: both detections at 0902, one hits its box (0904 is excluded); b: its box was never detected; 3: not evaluated
    assert from_files == {"mAP@0.5": 50.0, "AP@0.5/a": 100.0, "AP@0.5/b": 0.0}
