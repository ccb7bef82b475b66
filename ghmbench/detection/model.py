"""RetinaNet-style detector: backbone, FPN (torchvision.ops), anchors, heads, post-processing.

Anchor matching and box coding live in ``anchors.py``; the losses in ``losses/``, applied to a
batch by ``criterion.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torchvision
from omegaconf import DictConfig
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, batched_nms
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ghmbench.detection.anchors import BoxCoder, make_anchors


def _conv_gn(cin: int, cout: int, stride: int) -> nn.Sequential:
    groups = math.gcd(8, cout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class SmallBackbone(nn.Module):
    """A CPU-sized CNN with GroupNorm (batch-independent), giving C2..C5 at strides 4..32.

    Args:
        in_channels: image channels.
        width: channels of C2; each later stage doubles them.
    """

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_gn(in_channels, width, 2), _conv_gn(width, width, 2))  # stride 4
        self.stages = nn.ModuleList()
        chans = [width]
        for i in range(3):
            cin, cout = chans[-1], width * 2 ** (i + 1)
            self.stages.append(nn.Sequential(_conv_gn(cin, cout, 2), _conv_gn(cout, cout, 1)))
            chans.append(cout)
        self.out_channels = {2 + i: c for i, c in enumerate(chans)}

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        """Images [B, C, H, W] -> {level: [B, C_l, H / 2^l, W / 2^l]} for levels 2..5."""
        feats = {2: self.stem(x)}
        for i, stage in enumerate(self.stages):
            feats[3 + i] = stage(feats[2 + i])
        return feats


class ResNet18Backbone(nn.Module):
    """torchvision resnet18 (random init, or weights from a local file), C2..C5.

    Args:
        in_channels: image channels; for 1 the first convolution's weights are summed over RGB.
        weights_path: optional local state-dict file of torchvision's resnet18 (never downloaded).
    """

    def __init__(self, in_channels: int = 1, weights_path: str | None = None) -> None:
        super().__init__()
        net = torchvision.models.resnet18(weights=None)
        if weights_path:
            state = torch.load(Path(weights_path).expanduser(), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        if in_channels != 3:
            w = net.conv1.weight.data
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            net.conv1.weight.data = w.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_channels = {2: 64, 3: 128, 4: 256, 5: 512}

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        x = self.stem(x)
        feats = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            feats[2 + i] = x
        return feats


class Head(nn.Module):
    """A RetinaNet subnet shared across levels: ``num_convs`` 3x3 convs + ReLU, then a predictor.

    Args:
        channels: FPN channels.
        num_outputs: outputs per anchor (C for classification, 4 for boxes).
        num_anchors: anchors per position.
        num_convs: hidden convolutions.
        bias: initial bias of the predictor.
    """

    def __init__(self, channels: int, num_outputs: int, num_anchors: int, num_convs: int, bias: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.tower = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(channels, num_anchors * num_outputs, 3, padding=1)
        self.num_outputs = num_outputs
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(self.predictor.bias, bias)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Features per level [B, F, H_l, W_l] -> [B, sum_l H_l W_l A, num_outputs]."""
        outs = []
        for f in feats:
            y = self.predictor(self.tower(f))
            b, _, h, w = y.shape
            outs.append(y.view(b, -1, self.num_outputs, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, self.num_outputs))
        return torch.cat(outs, dim=1)


@dataclass
class DetectorOutput:
    """Raw outputs. cls_logits [B, A, C]; box_deltas [B, A, 4]; anchors [A, 4]; level_ids [A]."""

    cls_logits: Tensor
    box_deltas: Tensor
    anchors: Tensor
    level_ids: Tensor


class RetinaDetector(nn.Module):
    """Backbone + FPN + classification and box subnets + anchors.

    Args:
        num_classes: C.
        in_channels: image channels.
        backbone: ``small`` or ``resnet18``.
        backbone_width: width of the small backbone.
        weights_path: local resnet18 weights, optional.
        levels: FPN levels to predict from (2..7; 6 and 7 come from P6/P7 extra blocks).
        fpn_channels: FPN and head width.
        head_convs: hidden convolutions per subnet.
        anchor_sizes: base anchor size per level.
        anchor_scales: octave scales applied to each base size.
        aspect_ratios: height / width ratios.
        prior_prob: initial foreground probability pi of the classification bias.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        backbone: str = "small",
        backbone_width: int = 16,
        weights_path: str | None = None,
        levels: tuple[int, ...] = (2, 3, 4),
        fpn_channels: int = 64,
        head_convs: int = 2,
        anchor_sizes: tuple[float, ...] = (12.0, 24.0, 48.0),
        anchor_scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.levels = tuple(levels)
        if backbone == "small":
            self.backbone: nn.Module = SmallBackbone(in_channels, backbone_width)
        elif backbone == "resnet18":
            self.backbone = ResNet18Backbone(in_channels, weights_path)
        else:
            raise ValueError(f"unknown backbone {backbone!r}")
        self.base_levels = [lvl for lvl in range(min(self.levels), 6)]
        in_list = [self.backbone.out_channels[lvl] for lvl in self.base_levels]
        extra = LastLevelP6P7(fpn_channels, fpn_channels) if max(self.levels) > 5 else None
        self.fpn = FeaturePyramidNetwork(in_list, fpn_channels, extra_blocks=extra)
        self.anchor_sizes = tuple(anchor_sizes)
        self.anchor_scales = tuple(anchor_scales)
        self.aspect_ratios = tuple(aspect_ratios)
        num_anchors = len(anchor_scales) * len(aspect_ratios)
        bias = -math.log((1 - prior_prob) / prior_prob)
        self.cls_head = Head(fpn_channels, num_classes, num_anchors, head_convs, bias)
        self.box_head = Head(fpn_channels, 4, num_anchors, head_convs, 0.0)
        self._anchor_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _anchors(
        self, shapes: list[tuple[int, int]], image_hw: tuple[int, int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        key = (tuple(shapes), image_hw, str(device))
        if key not in self._anchor_cache:
            strides = [(image_hw[0] / h, image_hw[1] / w) for h, w in shapes]
            self._anchor_cache[key] = make_anchors(
                shapes, strides, self.anchor_sizes, self.anchor_scales, self.aspect_ratios, device
            )
        return self._anchor_cache[key]

    def features(self, images: Tensor) -> list[Tensor]:
        """Images [B, C, H, W] -> the FPN maps of ``self.levels``, in order (what the heads see)."""
        feats = self.backbone(images)
        pyramid = self.fpn(OrderedDict((str(lvl), feats[lvl]) for lvl in self.base_levels))
        names = list(pyramid.keys())  # base levels, then "pool"-style extra names for P6, P7
        by_level = {
            lvl: pyramid[names[i]]
            for i, lvl in enumerate(self.base_levels + [6, 7][: len(names) - len(self.base_levels)])
        }
        return [by_level[lvl] for lvl in self.levels]

    def forward(self, images: Tensor) -> DetectorOutput:
        """Images [B, C, H, W] -> :class:`DetectorOutput`."""
        selected = self.features(images)
        anchors, level_ids = self._anchors(
            [tuple(f.shape[-2:]) for f in selected], tuple(images.shape[-2:]), images.device
        )
        return DetectorOutput(self.cls_head(selected), self.box_head(selected), anchors, level_ids)


def build_model(model_cfg: DictConfig, num_classes: int, in_channels: int) -> RetinaDetector:
    """The detector of a config's ``model`` section."""
    return RetinaDetector(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=model_cfg.backbone,
        backbone_width=model_cfg.backbone_width,
        weights_path=model_cfg.weights_path,
        levels=tuple(model_cfg.levels),
        fpn_channels=model_cfg.fpn_channels,
        head_convs=model_cfg.head_convs,
        anchor_sizes=tuple(model_cfg.anchor_sizes),
        anchor_scales=tuple(model_cfg.anchor_scales),
        aspect_ratios=tuple(model_cfg.aspect_ratios),
        prior_prob=model_cfg.prior_prob,
    )


@torch.no_grad()
def postprocess(
    out: DetectorOutput,
    coder: BoxCoder,
    image_hw: tuple[int, int],
    score_thresh: float = 0.05,
    topk_candidates: int = 1000,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> list[dict[str, Tensor]]:
    """Detections per image: top-k candidates per level above the score threshold, decoded,
    clipped, class-wise NMS (torchvision ``batched_nms``), best ``detections_per_img`` kept.

    The candidates of the whole batch are chosen and decoded at once (per level, the top k of
    every image with k = the most scores above the threshold in any image, capped at
    ``topk_candidates``, then the threshold: the same candidates as threshold-then-top-k), so the
    per-image work is the NMS alone, not a Python loop over images x levels of small ops
    (results/benchmarks.md has what that loop cost).

    Returns:
        per image {"boxes": [D, 4] xyxy, "scores": [D], "labels": [D]}.
    """
    batch, _, num_classes = out.cls_logits.shape
    level_bounds = torch.unique_consecutive(out.level_ids, return_counts=True)[1].tolist()
    top_scores, top_idx = [], []
    start = 0
    for count in level_bounds:
        scores = torch.sigmoid(out.cls_logits[:, start : start + count].float()).reshape(batch, -1)  # [B, count * C]
        above = int((scores > score_thresh).sum(dim=1).max())  # no image has more candidates above the threshold
        values, idx = scores.topk(min(topk_candidates, above), dim=1)
        top_scores.append(values)
        top_idx.append(idx + start * num_classes)
        start += count
    scores, flat = torch.cat(top_scores, dim=1), torch.cat(top_idx, dim=1)  # [B, K] candidates, levels in order
    keep = scores > score_thresh
    image = keep.nonzero()[:, 0]  # row-major: image by image, each in level and score order
    scores, flat = scores[keep], flat[keep]
    anchor_idx = torch.div(flat, num_classes, rounding_mode="floor")
    labels = flat % num_classes
    boxes = coder.decode(out.box_deltas[image, anchor_idx].float(), out.anchors[anchor_idx])
    boxes = torchvision.ops.clip_boxes_to_image(boxes, image_hw)
    results = []
    for b, s, lab in zip(*(t.split(torch.bincount(image, minlength=batch).tolist()) for t in (boxes, scores, labels))):
        kept = batched_nms(b, s, lab, nms_thresh)[:detections_per_img]
        results.append({"boxes": b[kept], "scores": s[kept], "labels": lab[kept]})
    return results


def amp_forward(net: nn.Module, images: Tensor, amp: str) -> DetectorOutput:
    """The network's forward, in bfloat16 autocast when ``amp == "bf16"``; its outputs come back
    in float32, so that the losses, their reductions and the GHM weights are float32."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        out = net(images)
    return replace(out, cls_logits=out.cls_logits.float(), box_deltas=out.box_deltas.float())


__all__ = [
    "RetinaDetector",
    "build_model",
    "amp_forward",
    "SmallBackbone",
    "ResNet18Backbone",
    "Head",
    "DetectorOutput",
    "postprocess",
]
