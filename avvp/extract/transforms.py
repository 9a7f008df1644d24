"""Per-network preprocessing of a frame, as the release's torchvision transforms apply it to a PIL image.

ResNet-152 (pretrainedmodels' `TransformImage` for the ImageNet ResNets): Resize(256) of the short side
(floor(224 / 0.875); PIL bilinear), CenterCrop(224), ToTensor, Normalize(IMAGENET_MEAN, IMAGENET_STD).
R(2+1)D-18 (torchvision's Kinetics models): Resize((112, 112)) (PIL bilinear, no crop), ToTensor,
Normalize(KINETICS_MEAN, KINETICS_STD). The PIL steps run where the frames are decoded (worker processes) and
give uint8 arrays; `to_input` does ToTensor and Normalize on whole batches.
"""

from __future__ import annotations

import typing

import numpy as np

if typing.TYPE_CHECKING:
    import torch
# torch is imported where batches are normalised: the decoding workers run without it.

RESNET_RESIZE = 256
"""Short side after resizing: floor(224 / 0.875), pretrainedmodels' scale for ResNet-152."""
RESNET_CROP = 224
R2PLUS1D_SIZE = 112
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def resize_short_side(image, size: int):
    """torchvision's Resize(size) on a PIL image: the short side becomes `size`, the long one int(size * long /
    short), PIL bilinear."""
    from PIL import Image

    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    return image.resize((new_width, new_height), Image.BILINEAR)


def center_crop(image, size: int):
    """torchvision's CenterCrop(size) on a PIL image at least `size` on each side: offsets round((d - size) / 2)."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def resnet_pixels(image) -> np.ndarray:
    """A PIL frame as ResNet-152 sees it before ToTensor: (224, 224, 3) uint8 RGB."""
    cropped = center_crop(resize_short_side(image.convert("RGB"), RESNET_RESIZE), RESNET_CROP)
    return np.asarray(cropped, dtype=np.uint8)


def r2plus1d_pixels(image) -> np.ndarray:
    """A PIL frame as R(2+1)D-18 sees it before ToTensor: (112, 112, 3) uint8 RGB."""
    from PIL import Image

    resized = image.convert("RGB").resize((R2PLUS1D_SIZE, R2PLUS1D_SIZE), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def frame_pixels(image) -> tuple[np.ndarray, np.ndarray]:
    """Both networks' pixels of one decoded frame: ((224, 224, 3), (112, 112, 3)) uint8."""
    return resnet_pixels(image), r2plus1d_pixels(image)


def to_input(pixels: np.ndarray | torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """ToTensor then Normalize on a batch: (N, H, W, 3) uint8 -> (N, 3, H, W) float32."""
    import torch

    pixels = torch.as_tensor(pixels)
    images = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)  # (N, 3, H, W) in [0, 1]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return images.sub_(mean_t).div_(std_t)
