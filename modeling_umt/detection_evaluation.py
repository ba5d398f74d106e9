"""AVA frame-mAP for `UMTForVideoActionDetection`, as the official evaluator (Google's AVA `PascalDetectionEvaluator`
vendored by the official code; qa_and_detection.md §B "Evaluation").

`frame_average_precision(groundtruth, detections, class_ids)`:
- per frame (image key) and class, detections in descending score order are matched to the ground-truth box of that
  class with the highest IoU (areas without +1); IoU >= 0.5 and that box not yet matched -> true positive, otherwise
  false positive (even when another unmatched box overlaps enough); frames without any ground truth count their
  detections as false positives unless `ignore_empty_frames`;
- per class, all detections sorted by score (numpy's `argsort` reversed, as the evaluator), precision / recall
  against the number of ground-truth boxes, Pascal-VOC all-point interpolated AP;
- mAP is the mean over classes that have ground truth (a class without any is NaN and left out); excluded frames are
  skipped on both sides.

`collect_detections(model, batches, post_process)` runs the detector over evaluation batches (the
`DetectionEvalTransform` samples) and returns the detections in normalised [0, 1] xyxy, keyed as the ground truth.
Not an `evaluate` module: its inputs are per-frame variable-length box sets, which evaluate's equal-length
prediction / reference columns do not express.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from processors.detection import boxes_to_normalized, make_image_key, read_ava_annotations, read_ava_exclusions
from processors.rows import RowCheck

__all__ = ["ava_frame_map_metrics", "box_iou", "collect_detections", "frame_average_precision",
           "groundtruth_from_annotations", "voc_average_precision"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) intersection over union, areas (x2 - x1) * (y2 - y1) (no +1)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def voc_average_precision(scores: np.ndarray, true_positive: np.ndarray, num_groundtruth: int) -> float:
    """Pascal-VOC all-point interpolated AP of one class: NaN without ground truth, 0 without detections."""
    if num_groundtruth == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(scores)[::-1]
    tp = np.asarray(true_positive, dtype=np.int64)[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1 - tp)
    precision = np.concatenate([[0.0], cum_tp / (cum_tp + cum_fp), [0.0]])
    recall = np.concatenate([[0.0], cum_tp / num_groundtruth, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _match_frame(gt_boxes, det_boxes, det_scores, threshold: float) -> np.ndarray:
    """True positives of one frame and class, detections taken in descending score order (stable)."""
    tp = np.zeros(len(det_scores), dtype=bool)
    if len(gt_boxes) == 0 or len(det_scores) == 0:
        return tp
    order = sorted(range(len(det_scores)), key=lambda i: -det_scores[i])
    iou = box_iou(np.asarray(det_boxes)[order], gt_boxes)
    best = iou.argmax(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for row, i in enumerate(order):
        g = best[row]
        if iou[row, g] >= threshold and not taken[g]:
            tp[i] = taken[g] = True
    return tp


def frame_average_precision(
    groundtruth: Mapping[str, tuple],
    detections: Mapping[str, tuple],
    class_ids: Iterable[int],
    excluded: Iterable[str] = (),
    iou_threshold: float = 0.5,
    ignore_empty_frames: bool = False,
) -> dict:
    """Frame-AP per class and their mean (see the module docstring).

    groundtruth: {image key: (boxes (N, 4) xyxy, action ids (N,))}, one row per (box, action).
    detections: {image key: (boxes (M, 4), action ids (M,), scores (M,))}, one row per (box, action).
    class_ids: the evaluated actions (e.g. the 60 of the AVA label map); other ids are ignored on both sides.
    Returns {"mAP": float (fraction), "AP": {class id: AP (NaN without ground truth)}, "num_groundtruth": {id: n}}.
    """
    classes = sorted({int(c) for c in class_ids})
    wanted, excluded = set(classes), set(excluded)
    num_gt = {c: 0 for c in classes}
    scores: dict[int, list] = defaultdict(list)
    hits: dict[int, list] = defaultdict(list)
    gt_by_frame = {}
    for key, (boxes, labels) in groundtruth.items():
        if key in excluded:
            continue
        boxes, labels = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels).reshape(-1)
        gt_by_frame[key] = (boxes, labels)
        for c in labels:
            if int(c) in wanted:
                num_gt[int(c)] += 1
    for key, (boxes, labels, det_scores) in detections.items():
        if key in excluded or (ignore_empty_frames and key not in gt_by_frame):
            continue
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels, det_scores = np.asarray(labels).reshape(-1), np.asarray(det_scores, dtype=np.float64).reshape(-1)
        gt_boxes, gt_labels = gt_by_frame.get(key, (np.zeros((0, 4)), np.zeros(0, dtype=np.int64)))
        for c in set(int(x) for x in labels) & wanted:
            sel = labels == c
            tp = _match_frame(gt_boxes[gt_labels == c], boxes[sel], det_scores[sel], iou_threshold)
            scores[c].extend(det_scores[sel].tolist())
            hits[c].extend(tp.tolist())
    ap = {c: voc_average_precision(np.asarray(scores[c]), np.asarray(hits[c], dtype=bool), num_gt[c])
          for c in classes}
    valid = [v for v in ap.values() if not np.isnan(v)]
    return {"mAP": float(np.mean(valid)) if valid else float("nan"), "AP": ap, "num_groundtruth": num_gt}


def groundtruth_from_annotations(annotations: Mapping[str, list]) -> dict[str, tuple]:
    """`processors.detection.read_ava_annotations` output -> the `groundtruth` argument of
    `frame_average_precision`."""
    out = {}
    for key, rows in annotations.items():
        out[key] = (np.array([box for box, _, _ in rows], dtype=np.float64).reshape(-1, 4),
                    np.array([action for _, action, _ in rows], dtype=np.int64))
    return out


@torch.no_grad()
def collect_detections(
    model: torch.nn.Module,
    batches: Iterable[dict],
    label_ids: list[int],
    post_process: Callable | None = None,
    min_score: float = 0.0,
) -> dict[str, tuple]:
    """Run `model` over evaluation batches and return `frame_average_precision`'s `detections`.

    Each batch (`DetectionEvalTransform` samples through `DetectionCollator`) holds pixel_values, boxes (enlarged,
    what the model pools), proposal_boxes (what the scores belong to), box_scores, frame_size (B, 2) of the resized
    frame, original_size (B, 2) of the decoded frame, video_id and timestamp. Scores are sigmoid(logits) x box score
    (`post_process`, default the same formula); boxes are rescaled to the original frame and normalised with the
    official +1 (`boxes_to_normalized`). label_ids[j] is the action id of logit column j.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, tuple] = {}
    try:
        for batch in batches:
            with torch.no_grad():  # scores only: no autograd graph over the whole test pass
                output = model(batch["pixel_values"].to(device), [b.to(device) for b in batch["boxes"]])
            counts = [len(b) for b in batch["boxes"]]
            if post_process is not None:
                per_clip = [r["scores"].cpu() for r in post_process(output, batch["proposal_boxes"],
                                                                      batch["box_scores"])]
            else:
                probs = output.logits.float().sigmoid().cpu().split(counts)
                per_clip = [p * torch.as_tensor(s).reshape(-1, 1) for p, s in zip(probs, batch["box_scores"])]
            for i, scores in enumerate(per_clip):
                h, w = (int(v) for v in batch["frame_size"][i])
                h0, w0 = (int(v) for v in batch["original_size"][i])
                boxes = torch.as_tensor(batch["proposal_boxes"][i]) * torch.tensor([w0 / w, h0 / h, w0 / w, h0 / h])
                boxes = boxes_to_normalized(boxes, (h0, w0)).numpy()
                rows, cols = np.nonzero(scores.numpy() >= min_score)
                key = make_image_key(batch["video_id"][i], int(batch["timestamp"][i]))
                out[key] = (boxes[rows], np.asarray(label_ids)[cols], scores.numpy()[rows, cols])
    finally:
        model.train(was_training)
    return out


def ava_frame_map_metrics(
    groundtruth_csv: str | Mapping[str, list],
    label_map: Mapping[int, str],
    exclusions: str | set[str] | None = None,
    groups: Mapping[str, Iterable[int]] | None = None,
    check: RowCheck | None = None,
) -> Callable[[dict], dict[str, float]]:
    """A `metrics_from_detections` for `UMTActionDetectionTrainer`: frame-mAP@0.5 (percent) over the actions of
    `label_map` against the AVA ground-truth CSV, skipping `exclusions`; also the AP of every action
    (`AP@0.5/<name>`) and the mean AP of each named group of action ids (`mAP@0.5/<group>`).

    `groundtruth_csv` / `exclusions` may also be what `read_ava_annotations` / `read_ava_exclusions` made of the files
    (a script reads them once, for its records and here); bad lines of files read here go to `check` (None: strict).
    """
    if isinstance(groundtruth_csv, Mapping):
        wanted = {int(c) for c in label_map}
        annotations = {key: [row for row in rows if row[1] in wanted] for key, rows in groundtruth_csv.items()}
        annotations = {key: rows for key, rows in annotations.items() if rows}
    else:
        annotations = read_ava_annotations(groundtruth_csv, class_ids=label_map, check=check)
    groundtruth = groundtruth_from_annotations(annotations)
    excluded = exclusions if isinstance(exclusions, (set, frozenset)) else read_ava_exclusions(exclusions, check)

    def metrics(detections: dict) -> dict[str, float]:
        result = frame_average_precision(groundtruth, detections, label_map, excluded)
        out = {"mAP@0.5": 100 * result["mAP"]}
        out.update({f"AP@0.5/{label_map[c]}": 100 * ap for c, ap in result["AP"].items()})
        for name, ids in (groups or {}).items():
            aps = [result["AP"][int(c)] for c in ids if not np.isnan(result["AP"][int(c)])]
            out[f"mAP@0.5/{name}"] = 100 * float(np.mean(aps)) if aps else float("nan")
        return out

    return metrics
