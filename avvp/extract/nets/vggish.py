"""AudioSet VGGish with the key names of its widely used PyTorch conversion (harritaylor/torchvggish).

Weights: `vggish-10086976.pth`, 18 tensors, converted from the AudioSet TensorFlow checkpoint:

    features.0   Conv2d(1, 64, 3, padding=1)      conv1       features.{0,3,6,8,11,13}.weight (out, in, 3, 3)
    features.3   Conv2d(64, 128)                  conv2       features.{0,3,6,8,11,13}.bias   (out,)
    features.6   Conv2d(128, 256)                 conv3_1     (features.1, 4, 7, 9, 12, 14 are ReLUs;
    features.8   Conv2d(256, 256)                 conv3_2      2, 5, 10, 15 are 2x2 max pools)
    features.11  Conv2d(256, 512)                 conv4_1
    features.13  Conv2d(512, 512)                 conv4_2
    embeddings.0 Linear(12288, 4096)              fc1_1       embeddings.{0,2,4}.weight (out, in), .bias (out,)
    embeddings.2 Linear(4096, 4096)               fc1_2       (embeddings.1, 3 are ReLUs)
    embeddings.4 Linear(4096, 128)                fc2         the 128-d embedding

`vggish_pca_params-970ea276.pth` holds `pca_eigen_vectors` (128, 128) and `pca_means` (128,) (or (128, 1)): the
AudioSet postprocessing, `vggish_postprocess`.

The conversion flattens the (N, 512, 6, 4) map in TensorFlow's (height, width, channel) order before fc1, and ends
with a ReLU after fc2 (the 2017-2019 TensorFlow VGGish had one; the current TensorFlow code and README say the
embedding is pre-activation). `final_relu=True` (the default) reproduces the conversion whose weights we load;
`final_relu=False` gives the pre-activation embedding of the current AudioSet code.

Raw or postprocessed: the AudioSet release's own embeddings are postprocessed (PCA-whitened, 8-bit); the HAN
release does not say which its `vggish/*.npy` are. One look at any of those files tells: postprocessed values are
whole numbers in 0..255, raw ones (with the final ReLU) non-negative floats with many exact zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

EMBEDDING_DIM = 128
"""Width of the VGGish embedding."""
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
"""The AudioSet postprocessing clips the PCA-whitened embedding to this range before 8-bit quantisation."""


class VGGish(nn.Module):
    """VGGish: (N, 1, 96, 64) log-mel examples (96 frames of 10 ms, 64 mel bands) -> (N, 128) raw embedding."""

    def __init__(self, final_relu: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for width in (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool"):
            if width == "pool":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)
        self.final_relu = final_relu
        """Whether the embedding goes through a ReLU (as the torchvggish conversion does)."""

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """(N, 1, 96, 64) log-mel examples -> (N, 128) raw (not postprocessed) embeddings."""
        x = self.features(examples)  # (N, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (N, 6 * 4 * 512), TensorFlow's height-width-channel order
        return self.embeddings(x)  # (N, 128)


def vggish_postprocess(embeddings: torch.Tensor, pca_params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The AudioSet release's postprocessing of raw VGGish embeddings: (N, 128) -> (N, 128) float32 in 0..255.

    PCA with whitening (`pca_eigen_vectors @ (embedding - pca_means)`), clipped to [-2, 2], mapped linearly to
    [0, 255] and truncated to integers as the AudioSet `vggish_postprocess.py` does (`astype(uint8)`, toward zero;
    torchvggish rounds instead, so up to one step apart). The values stay on that 0..255 scale, the scale of the
    released AudioSet embeddings, returned as float32 so that they go into a feature store like every stream.
    """
    eigen_vectors = pca_params["pca_eigen_vectors"].to(embeddings.device, torch.float64)  # (128, 128), rows: outputs
    means = pca_params["pca_means"].to(embeddings.device, torch.float64).reshape(1, EMBEDDING_DIM)  # (1, 128)
    whitened = (embeddings.to(torch.float64) - means) @ eigen_vectors.T  # (N, 128)
    clipped = whitened.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
    scaled = (clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN))  # [0, 255]
    return torch.trunc(scaled).to(torch.float32)
