"""ImageNet ResNet-152 with torchvision's parameter names, for the LLP `res152` visual features.

The HAN release extracts them with the `pretrainedmodels` package's "imagenet" `resnet152`, which is torchvision's
ResNet-152 loading torchvision's `resnet152-b121ed2d.pth`, input RGB in [0, 1], 224x224, normalised with mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); its `features` + average pool, before `last_linear` (the
torchvision `fc`), is the 2048-d feature. This module has torchvision's names (conv1, bn1, layer1..layer4 of
Bottleneck blocks with downsample.0/1, fc), so that file loads with strict=True; the stride of a downsampling
block is on its 3x3 convolution, as in torchvision.
"""

from __future__ import annotations

import torch
from torch import nn

RESNET152_BLOCKS = (3, 8, 36, 3)
"""Bottleneck blocks in layer1..layer4 of ResNet-152."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel (RGB) mean the ImageNet weights expect, input in [0, 1]."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel (RGB) standard deviation the ImageNet weights expect."""


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, each with batch norm; residual, then ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ImageNet ResNet of Bottleneck blocks; `forward_features` is the pooled 2048-d feature."""

    def __init__(self, blocks_per_layer: tuple[int, int, int, int] = RESNET152_BLOCKS, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        for index, (width, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_layer, strict=True)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck(in_channels, width, stride if block == 0 else 1))
                in_channels = width * Bottleneck.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.feature_dim = in_channels
        """Width of `forward_features` (2048)."""

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised RGB (224x224 for the LLP features) -> (N, 2048) average-pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 2048, H/32, W/32)
        return torch.flatten(self.avgpool(x), 1)  # (N, 2048)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1000) ImageNet logits."""
        return self.fc(self.forward_features(images))


def resnet152() -> ResNet:
    """ResNet-152 (blocks 3, 8, 36, 3), randomly initialised; `avvp.extract.weights` loads the ImageNet weights."""
    return ResNet(RESNET152_BLOCKS)
