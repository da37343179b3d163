"""ResNet specs for the vision task (He et al., CVPR 2016, in torchvision's layout). Not a plugin.

* Blocks: ``basic`` (two 3x3 convs; ResNet-18/34) or ``bottleneck`` (1x1 reduce, 3x3, 1x1 expand
  x4; ResNet-50, the stride on the 3x3 conv as torchvision's "v1.5"). Every conv has no bias and
  is followed by BatchNorm (momentum 0.1, epsilon 1e-5, PyTorch's defaults); the block's sum with
  its shortcut is followed by ReLU. A block that changes the stride or the width has a projection
  shortcut: 1x1 conv (stride 2 where the block downsamples) + BatchNorm.
* Stages: four, widths ``w, 2w, 4w, 8w`` (x4 out for bottlenecks), the first at stride 1 and the
  others downsampling by 2 in their first block.
* Stem by input size: below 64 pixels the CIFAR stem (3x3 conv stride 1, padding 1, no pool); from
  64 pixels the ImageNet stem (7x7 conv stride 2, padding 3, then torchvision's 3x3 max-pool
  with stride 2 and padding 1, halving the size).
* Head: global average pool, Dense to the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlbench.api import ModelSpec, SpecBuilder


@dataclass(frozen=True)
class ResNetSize:
    block: str
    """``basic`` or ``bottleneck``."""
    blocks: tuple[int, int, int, int]
    """Blocks per stage."""
    width: int
    """Width of the first stage (the stem's channels)."""


SIZES = {
    "tiny": ResNetSize("basic", (1, 1, 1, 1), 8),
    "resnet18": ResNetSize("basic", (2, 2, 2, 2), 64),
    "resnet34": ResNetSize("basic", (3, 4, 6, 3), 64),
    "resnet50": ResNetSize("bottleneck", (3, 4, 6, 3), 64),
}
IMAGENET_STEM_FROM = 64
"""Inputs of this many pixels a side or more get the ImageNet stem (7x7 stride 2 + pool)."""
EXPANSION = {"basic": 1, "bottleneck": 4}


def resnet_spec(name: str, size: ResNetSize, image_size: int, channels: int, classes: int) -> ModelSpec:
    """The ResNet of ``size`` for ``(image_size, image_size, channels)`` inputs and ``classes``."""
    b = SpecBuilder(name)
    x = b.input("image", (image_size, image_size, channels))
    w = size.width
    if image_size >= IMAGENET_STEM_FROM:
        x = _conv_bn(b, x, w, 7, 2, 3, "stem")
        x = b.max_pool(b.activation(x, "relu", name="stem_relu"), 3, strides=2, padding=1,
                      name="stem_pool")
    else:
        x = b.activation(_conv_bn(b, x, w, 3, 1, 1, "stem"), "relu", name="stem_relu")
    c_in = w
    for s, n in enumerate(size.blocks):
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            x, c_in = _block(b, x, size.block, c_in, w * 2 ** s, stride, f"stage{s + 1}_block{i + 1}")
    x = b.global_avg_pool(x, name="pool")
    return b.build(b.dense(x, classes, name="logits"))


def _conv_bn(b: SpecBuilder, x: str, filters: int, k: int, stride: int, pad: int, name: str) -> str:
    x = b.conv2d(x, filters, k, stride, pad, name=f"{name}_conv", use_bias=False)
    return b.batch_norm(x, 0.1, 1e-5, name=f"{name}_bn")


def _block(b: SpecBuilder, x: str, kind: str, c_in: int, width: int, stride: int,
           name: str) -> tuple[str, int]:
    c_out = width * EXPANSION[kind]
    if kind == "basic":
        h = b.activation(_conv_bn(b, x, width, 3, stride, 1, f"{name}_a"), "relu", name=f"{name}_a_relu")
        h = _conv_bn(b, h, width, 3, 1, 1, f"{name}_b")
    else:
        h = b.activation(_conv_bn(b, x, width, 1, 1, 0, f"{name}_a"), "relu", name=f"{name}_a_relu")
        h = b.activation(_conv_bn(b, h, width, 3, stride, 1, f"{name}_b"), "relu", name=f"{name}_b_relu")
        h = _conv_bn(b, h, c_out, 1, 1, 0, f"{name}_c")
    shortcut = x
    if stride != 1 or c_in != c_out:
        shortcut = _conv_bn(b, x, c_out, 1, stride, 0, f"{name}_proj")
    out = b.activation(b.add(h, shortcut, name=f"{name}_add"), "relu", name=f"{name}_relu")
    return out, c_out
