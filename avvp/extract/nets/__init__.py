"""The three feature networks with their published parameter names, so the published weight files load unchanged.

`resnet152` (ImageNet, torchvision names) -> `visual` (2048); `r2plus1d_18` (Kinetics-400, torchvision names) ->
`motion` (512); `VGGish` (AudioSet, torchvggish names) -> `audio` (128), with `vggish_postprocess`.
"""

from avvp.extract.nets.r2plus1d import KINETICS_MEAN, KINETICS_STD, VideoResNet, r2plus1d_18
from avvp.extract.nets.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet, resnet152
from avvp.extract.nets.vggish import VGGish, vggish_postprocess

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ResNet",
    "VGGish",
    "VideoResNet",
    "r2plus1d_18",
    "resnet152",
    "vggish_postprocess",
]
