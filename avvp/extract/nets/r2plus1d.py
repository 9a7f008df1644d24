"""Kinetics-400 R(2+1)D-18 with torchvision's `video.r2plus1d_18` parameter names, for the LLP motion features.

The HAN release (`scripts/extract_3D_feat.py`) keeps every child of torchvision's `r2plus1d_18(pretrained=True)`
but the classifier (`nn.Sequential(*children[:-1])`: stem, layer1..layer4, the global average pool) and squeezes
the (N, 512, 1, 1, 1) output: `forward_features` returns exactly that, (N, 512). Its input is clips of 8
consecutive frames, each resized to 112x112, RGB in [0, 1], normalised with mean (0.43216, 0.394666, 0.37645) and
std (0.22803, 0.22145, 0.216989). The names (stem.0..5, layerK.B.conv1.0.{0,1,3} for the (2+1)D convolution,
conv1.1 its batch norm, downsample.0/1, fc) match torchvision's, so `r2plus1d_18-91a641e6.pth` loads strict.
"""

from __future__ import annotations

import torch
from torch import nn

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
"""Per-channel (RGB) mean the Kinetics-400 weights expect, input in [0, 1]."""
KINETICS_STD = (0.22803, 0.22145, 0.216989)
"""Per-channel (RGB) standard deviation the Kinetics-400 weights expect."""


def midplanes(in_planes: int, out_planes: int) -> int:
    """Channels between the spatial and the temporal convolution: the (2+1)D block then has as many parameters
    as a full 3x3x3 convolution would (torchvision's rule, computed once per block from its input width)."""
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


class Conv2Plus1D(nn.Sequential):
    """A 1x3x3 spatial convolution, batch norm, ReLU, then a 3x1x1 temporal one (children 0, 1, 2, 3)."""

    def __init__(self, in_planes: int, out_planes: int, mid_planes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, mid_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Two (2+1)D convolutions with batch norm, a residual (strided 1x1x1 projection where the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        mid = midplanes(in_planes, planes)  # torchvision uses the same width for both convolutions of a block
        self.conv1 = nn.Sequential(
            Conv2Plus1D(in_planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class VideoResNet(nn.Module):
    """R(2+1)D-18: a (2+1)D stem (45 then 64 channels), four layers of two BasicBlocks (64, 128, 256, 512)."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        in_planes = 64
        for index, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if index == 0 else 2
            blocks = [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        self.feature_dim = 512
        """Width of `forward_features`."""

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) normalised clips (T = 8, 112x112 for the LLP features) -> (N, 512) pooled features."""
        x = self.stem(clips)  # (N, 64, T, H/2, W/2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512, T/8, H/16, W/16)
        return torch.flatten(self.avgpool(x), 1)  # (N, 512)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, 400) Kinetics-400 logits."""
        return self.fc(self.forward_features(clips))


def r2plus1d_18() -> VideoResNet:
    """R(2+1)D-18, randomly initialised; `avvp.extract.weights` loads the Kinetics-400 weights."""
    return VideoResNet()
