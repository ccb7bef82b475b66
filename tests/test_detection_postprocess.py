"""Post-processing for evaluation: the batched candidate selection equals the per-image definition."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops import batched_nms

from ghmbench.detection.anchors import BoxCoder, make_anchors
from ghmbench.detection.model import DetectorOutput, postprocess


def _per_image_reference(out: DetectorOutput, coder: BoxCoder, image_hw, score_thresh, topk, nms_thresh, max_det):
    """The definition, one image and one level at a time: scores above the threshold, their top k,
    decoded and clipped; class-wise NMS over the image's candidates; the best ``max_det`` kept."""
    num_classes = out.cls_logits.shape[-1]
    results = []
    for b in range(out.cls_logits.shape[0]):
        boxes, scores, labels = [], [], []
        for lvl in out.level_ids.unique().tolist():
            rows = (out.level_ids == lvl).nonzero().squeeze(1)
            s = torch.sigmoid(out.cls_logits[b, rows]).flatten()
            idx = (s > score_thresh).nonzero().squeeze(1)
            s, top = s[idx].topk(min(topk, idx.numel()))
            idx = idx[top]
            anchor = rows[idx // num_classes]
            boxes.append(
                torchvision.ops.clip_boxes_to_image(
                    coder.decode(out.box_deltas[b, anchor], out.anchors[anchor]), image_hw
                )
            )
            scores.append(s)
            labels.append(idx % num_classes)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_det]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results


@pytest.mark.parametrize("shift", [-7.0, -4.0, 0.0])  # few, many, nearly all entries above the threshold
def test_batched_postprocess_equals_the_per_image_definition(shift):
    g = torch.Generator().manual_seed(int(shift) + 10)
    anchors, level_ids = make_anchors(
        [(8, 8), (4, 4), (2, 2)], [(8, 8), (16, 16), (32, 32)], (16.0, 32.0, 64.0), (1.0, 1.26), (0.5, 1.0, 2.0)
    )
    batch, classes = 6, 5
    logits = torch.randn(batch, anchors.shape[0], classes, generator=g) + shift
    logits[2] = -20.0  # an image without any candidate
    out = DetectorOutput(logits, torch.randn(batch, anchors.shape[0], 4, generator=g) * 0.5, anchors, level_ids)
    coder, hw = BoxCoder(), (64, 64)
    got = postprocess(out, coder, hw, score_thresh=0.05, topk_candidates=50, nms_thresh=0.5, detections_per_img=30)
    want = _per_image_reference(out, coder, hw, 0.05, 50, 0.5, 30)
    assert len(got) == batch and got[2]["scores"].numel() == 0
    assert sum(r["scores"].numel() for r in got) > 0
    for a, b in zip(got, want):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
