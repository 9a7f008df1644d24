"""The three feature networks, their weight files and the VGGish log-mel front end (random weights, no download).

The published key names and shapes are written down here from the published architectures (torchvision's
resnet152 and video.r2plus1d_18, the torchvggish conversion), not read from our modules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
import urllib.error

import numpy as np
import pytest
import torch

from avvp.errors import AvvpError
from avvp.extract import weights as weights_module
from avvp.extract.logmel import waveform_to_examples
from avvp.extract.nets import VGGish, r2plus1d_18, resnet152, vggish_postprocess
from avvp.extract.weights import WeightsError, load_network, load_pca_params, load_state_dict, weights_path

# --- the published state dicts --------------------------------------------------------------------------------


def batch_norm(prefix: str, channels: int, counters: bool) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}
    return keys | ({f"{prefix}.num_batches_tracked": ()} if counters else {})


def published_resnet152(counters: bool = False) -> dict[str, tuple[int, ...]]:
    """torchvision resnet152: 7x7/2 stem of 64, Bottleneck layers of (3, 8, 36, 3) blocks, widths 64..512 (x4 out),
    a 1x1 strided projection (downsample.0/1) on each layer's first block, fc 2048 -> 1000. `resnet152-b121ed2d.pth`
    dates from before PyTorch 0.4: no batch-norm counters (`counters` False)."""
    keys = {"conv1.weight": (64, 3, 7, 7)} | batch_norm("bn1", 64, counters)
    in_channels = 64
    for layer, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 8, 36, 3), strict=True), start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            keys[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1)
            keys |= batch_norm(f"{prefix}.bn1", width, counters)
            keys[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            keys |= batch_norm(f"{prefix}.bn2", width, counters)
            keys[f"{prefix}.conv3.weight"] = (4 * width, width, 1, 1)
            keys |= batch_norm(f"{prefix}.bn3", 4 * width, counters)
            if block == 0:
                keys[f"{prefix}.downsample.0.weight"] = (4 * width, in_channels, 1, 1)
                keys |= batch_norm(f"{prefix}.downsample.1", 4 * width, counters)
            in_channels = 4 * width
    return keys | {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


R2PLUS1D_MIDPLANES = {1: (144, 144), 2: (230, 288), 3: (460, 576), 4: (921, 1152)}
"""Channels between the spatial and temporal convolutions of each block of layer1..4 (torchvision's printout)."""


def published_r2plus1d_18(counters: bool = True) -> dict[str, tuple[int, ...]]:
    """torchvision video.r2plus1d_18: stem Conv3d(3, 45, 1x7x7), BN, ReLU, Conv3d(45, 64, 3x1x1), BN, ReLU; four
    layers of two BasicBlocks (64, 128, 256, 512), each convolution a (2+1)D pair 1x3x3 -> mid -> 3x1x1; downsample
    1x1x1 on layer2..4's first block; fc 512 -> 400. Saved by PyTorch 1.x: with batch-norm counters."""
    keys = {"stem.0.weight": (45, 3, 1, 7, 7)} | batch_norm("stem.1", 45, counters)
    keys |= {"stem.3.weight": (64, 45, 3, 1, 1)} | batch_norm("stem.4", 64, counters)
    in_planes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix, mid = f"layer{layer}.{block}", R2PLUS1D_MIDPLANES[layer][block]
            for conv, conv_in in (("conv1", in_planes), ("conv2", planes)):
                keys[f"{prefix}.{conv}.0.0.weight"] = (mid, conv_in, 1, 3, 3)
                keys |= batch_norm(f"{prefix}.{conv}.0.1", mid, counters)
                keys[f"{prefix}.{conv}.0.3.weight"] = (planes, mid, 3, 1, 1)
                keys |= batch_norm(f"{prefix}.{conv}.1", planes, counters)
            if layer > 1 and block == 0:
                keys[f"{prefix}.downsample.0.weight"] = (planes, in_planes, 1, 1, 1)
                keys |= batch_norm(f"{prefix}.downsample.1", planes, counters)
            in_planes = planes
    return keys | {"fc.weight": (400, 512), "fc.bias": (400,)}


def published_vggish() -> dict[str, tuple[int, ...]]:
    """torchvggish `vggish-10086976.pth`: features.{0,3,6,8,11,13} 3x3 convolutions 1-64-128-256-256-512-512,
    embeddings.{0,2,4} Linear 12288-4096-4096-128."""
    keys = {}
    convolutions = ((64, 1), (128, 64), (256, 128), (256, 256), (512, 256), (512, 512))  # (out, in)
    for index, (out_channels, in_channels) in zip((0, 3, 6, 8, 11, 13), convolutions, strict=True):
        keys[f"features.{index}.weight"] = (out_channels, in_channels, 3, 3)
        keys[f"features.{index}.bias"] = (out_channels,)
    for index, (out_features, in_features) in zip(
        (0, 2, 4), ((4096, 512 * 24), (4096, 4096), (128, 4096)), strict=True
    ):
        keys[f"embeddings.{index}.weight"] = (out_features, in_features)
        keys[f"embeddings.{index}.bias"] = (out_features,)
    return keys


def weight_count(keys: dict[str, tuple[int, ...]]) -> int:
    """Learned parameters (batch-norm running statistics and counters left out)."""
    return sum(math.prod(shape) for key, shape in keys.items() if not key.split(".")[-1].startswith(("running", "num")))


def test_the_published_key_lists_are_the_published_sizes():
    # torchvision's documented parameter counts: resnet152 60,192,808; r2plus1d_18 31,505,325; VGGish 72,141,184
    assert (len(published_resnet152()), weight_count(published_resnet152())) == (777, 60_192_808)
    assert (len(published_resnet152(counters=True)), len(published_r2plus1d_18())) == (932, 224)
    assert weight_count(published_r2plus1d_18()) == 31_505_325
    assert (len(published_vggish()), weight_count(published_vggish())) == (18, 72_141_184)


def random_state_dict(
    keys: dict[str, tuple[int, ...]], seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Weights of the given shapes scaled to keep activations finite: fan-in-scaled normal weights, small biases,
    batch norms near identity. float16 halves the files a test writes (the loader takes any floating type)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in keys.items():
        name = key.split(".")[-1]
        if name == "num_batches_tracked":
            value = torch.tensor(0)
        elif name == "running_var":
            value = 0.5 + torch.rand(shape, generator=generator)
        elif name in ("running_mean", "bias"):
            value = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:  # batch-norm scale
            value = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:
            value = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        state_dict[key] = value if name == "num_batches_tracked" else value.to(dtype)
    return state_dict


@pytest.mark.parametrize(
    "build, keys",
    [
        (resnet152, published_resnet152()),
        (resnet152, published_resnet152(counters=True)),
        (r2plus1d_18, published_r2plus1d_18()),
        (r2plus1d_18, published_r2plus1d_18(counters=False)),
        (VGGish, published_vggish()),
    ],
    ids=["resnet152-2017", "resnet152-counters", "r2plus1d_18", "r2plus1d_18-no-counters", "vggish"],
)
def test_a_published_state_dict_loads_strict(build, keys):
    with torch.device("meta"):
        network = build()
    state_dict = {key: torch.zeros(shape, device="meta") for key, shape in keys.items()}
    assert not network.load_state_dict(state_dict, strict=True, assign=True).missing_keys
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in build().state_dict().items()}
    assert {key: shape for key, shape in expected.items() if not key.endswith("num_batches_tracked")} == {
        key: shape for key, shape in keys.items() if not key.endswith("num_batches_tracked")
    }


# --- the weight files -----------------------------------------------------------------------------------------


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache for the test, and no download: a test that reaches the network fails."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folder))

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return folder


def publish(monkeypatch, name: str, path) -> None:
    """Make the file at `path` the published `name` weights: its name and sha256 prefix into the registry."""
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    entry = dataclasses.replace(weights_module.WEIGHTS[name], file_name=path.name, sha256_prefix=prefix)
    monkeypatch.setitem(weights_module.WEIGHTS, name, entry)


def write_weights(monkeypatch, folder, name: str, contents, legacy: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weights_module.WEIGHTS[name].file_name
    torch.save(contents, path, _use_new_zipfile_serialization=not legacy)
    publish(monkeypatch, name, path)
    return path


def identity_pca() -> dict[str, torch.Tensor]:
    return {"pca_eigen_vectors": torch.eye(128), "pca_means": torch.zeros(128)}


def one_line_error(call, *fragments) -> str:
    with pytest.raises(WeightsError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, AvvpError), message
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


def test_load_network_reads_an_old_format_file_without_counters(tmp_path, monkeypatch, hub_dir):
    # the format and the missing counters of a file saved before PyTorch 0.4, like resnet152-b121ed2d.pth
    r2plus1d_weights = random_state_dict(published_r2plus1d_18(counters=False), seed=1, dtype=torch.float16)
    write_weights(monkeypatch, tmp_path / "w", "r2plus1d_18", r2plus1d_weights, legacy=True)
    network = load_network("r2plus1d_18", tmp_path / "w", download=False)
    assert not network.training
    assert all(
        value.device.type == "cpu" and value.dtype in (torch.float32, torch.int64)
        for value in network.state_dict().values()
    )
    reference = r2plus1d_18().eval()
    reference.load_state_dict(r2plus1d_weights)
    clips = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))  # (N, 3, T, H, W)
    with torch.no_grad():
        features = network.forward_features(clips)
        release = torch.nn.Sequential(*list(reference.children())[:-1])(clips).squeeze()  # extract_3D_feat.py
    assert features.shape == (1, 512) and torch.isfinite(features).all()
    torch.testing.assert_close(features[0], release, rtol=1e-5, atol=1e-6)
    assert network(clips).shape == (1, 400)


def test_resnet152_features_are_the_pooled_output_before_fc():
    network = resnet152().eval()
    network.load_state_dict(random_state_dict(published_resnet152(), seed=2))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (N, 3, H, W), reduced size
    with torch.no_grad():
        features = network.forward_features(images)
        stem = network.maxpool(network.relu(network.bn1(network.conv1(images))))
        pooled = network.layer4(network.layer3(network.layer2(network.layer1(stem)))).mean(dim=(2, 3))
        full_size = network.forward_features(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    assert features.shape == (2, 2048) and full_size.shape == (1, 2048) and torch.isfinite(full_size).all()
    torch.testing.assert_close(features, pooled)
    torch.testing.assert_close(network.fc(features), network(images))


def test_vggish_flattens_in_tensorflow_order_and_embeds(tmp_path, monkeypatch, hub_dir):
    write_weights(monkeypatch, tmp_path / "w", "vggish", random_state_dict(published_vggish(), 3, torch.float16))
    network = load_network("vggish", tmp_path / "w", download=False)
    assert all(value.dtype == torch.float32 for value in network.state_dict().values())
    examples = torch.randn(3, 1, 96, 64, generator=torch.Generator().manual_seed(0))  # (N, 1, frames, bands)
    with torch.no_grad():
        embedding = network(examples)
        conv = network.features(examples).numpy()  # (N, 512, 6, 4)
    hidden = conv.transpose(0, 2, 3, 1).reshape(3, -1)  # TensorFlow flattens height, width, channel
    for index in (0, 2, 4):
        weight, bias = (network.embeddings[index].weight.numpy(), network.embeddings[index].bias.numpy())
        hidden = np.maximum(hidden @ weight.T + bias, 0.0)  # each Linear followed by ReLU, fc2's included
    assert embedding.shape == (3, 128)
    np.testing.assert_allclose(embedding.numpy(), hidden, rtol=1e-4, atol=1e-5)
    del network
    pre_activation = load_network("vggish", tmp_path / "w", download=False, final_relu=False)
    with torch.no_grad():
        raw = pre_activation(examples)
    assert (raw < 0).any() and torch.equal(raw.clamp(min=0), embedding)


def test_missing_weights_offline_is_one_line_naming_file_and_folder(tmp_path, hub_dir):
    (tmp_path / "w").mkdir()
    one_line_error(
        lambda: weights_path("vggish", tmp_path / "w", download=False),
        "vggish-10086976.pth",
        tmp_path / "w",
        hub_dir / "checkpoints",
        "github.com",
    )
    one_line_error(lambda: weights_path("resnet152", download=False), "resnet152-b121ed2d.pth", hub_dir)
    one_line_error(lambda: weights_path("vggish", tmp_path / "nowhere"), "--weights", "not a folder")
    one_line_error(lambda: weights_path("resnet50"), "unknown weights 'resnet50'")


def test_weights_are_found_in_the_folder_then_the_hub_cache(tmp_path, monkeypatch, hub_dir):
    cached = write_weights(monkeypatch, hub_dir / "checkpoints", "vggish_pca", identity_pca())
    (tmp_path / "w").mkdir()
    assert weights_path("vggish_pca", tmp_path / "w", download=False) == cached
    assert weights_path("vggish_pca", download=False) == cached


def test_download_goes_to_the_hub_cache_with_a_progress_bar(tmp_path, monkeypatch, hub_dir):
    calls = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        calls.append((url, destination, hash_prefix, progress))
        torch.save(identity_pca(), destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    weight = weights_module.WEIGHTS["vggish_pca"]
    path = weights_path("vggish_pca")
    assert path == hub_dir / "checkpoints" / weight.file_name and path.is_file()
    assert calls == [(weight.url, str(path), weight.sha256_prefix, True)]

    def offline(url, destination, hash_prefix=None, progress=True):
        raise urllib.error.URLError("Name or service not known")

    path.unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    one_line_error(
        lambda: weights_path("vggish_pca"),
        weight.file_name,
        weight.url,
        "Name or service not known",
        hub_dir / "checkpoints",
    )


def test_a_file_with_another_hash_is_refused(tmp_path, hub_dir):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "vggish-10086976.pth").write_bytes(b"not the published weights")
    one_line_error(
        lambda: load_state_dict("vggish", folder, download=False), folder / "vggish-10086976.pth", "sha256", "10086976"
    )


class NotATensor:
    """A class a weights-only load must refuse to build."""


@pytest.mark.parametrize(
    "contents, fragments",
    [
        ([torch.zeros(3)], ["holds a list", "expected a state dict"]),
        (
            {"pca_eigen_vectors": NotATensor(), "pca_means": torch.zeros(128)},
            ["objects other than tensors", "NotATensor"],
        ),
        (
            {"pca_eigen_vectors": torch.eye(128), "pca_mean": torch.zeros(128)},
            ["1 missing (pca_means)", "1 unexpected (pca_mean)"],
        ),
        (
            {"pca_eigen_vectors": torch.eye(128, dtype=torch.int64), "pca_means": torch.zeros(128)},
            ["pca_eigen_vectors is a torch.int64 tensor", "floating-point"],
        ),
        ({"pca_eigen_vectors": torch.eye(64), "pca_means": torch.zeros(128)}, ["pca_eigen_vectors has shape (64, 64)"]),
        ({0: torch.eye(128), "pca_means": torch.zeros(128)}, ["key 0 is a int"]),
        ({"pca_eigen_vectors": torch.eye(128).to_sparse(), "pca_means": torch.zeros(128)}, ["dense"]),
    ],
    ids=["list", "foreign-class", "wrong-keys", "integer-tensor", "wrong-shape", "integer-key", "sparse"],
)
def test_a_file_that_is_not_the_weights_is_one_line(tmp_path, monkeypatch, hub_dir, contents, fragments):
    path = write_weights(monkeypatch, tmp_path / "w", "vggish_pca", contents)
    one_line_error(lambda: load_state_dict("vggish_pca", tmp_path / "w", download=False), path, *fragments)


def test_a_plain_pickle_or_a_truncated_file_is_one_line(tmp_path, monkeypatch, hub_dir):
    folder = tmp_path / "w"
    folder.mkdir()
    path = folder / weights_module.WEIGHTS["vggish_pca"].file_name
    path.write_bytes(pickle.dumps({"pca_eigen_vectors": np.eye(128)}))
    publish(monkeypatch, "vggish_pca", path)
    one_line_error(lambda: load_state_dict("vggish_pca", folder, download=False), path, "not a PyTorch weight file")
    torch.save(identity_pca(), path)
    path.write_bytes(path.read_bytes()[:300])
    publish(monkeypatch, "vggish_pca", path)
    one_line_error(lambda: load_state_dict("vggish_pca", folder, download=False), path, "not a readable")


@pytest.mark.parametrize("means_shape", [(128,), (128, 1)])
def test_pca_params_of_numpy_arrays_load(tmp_path, monkeypatch, hub_dir, means_shape):
    rng = np.random.default_rng(0)
    contents = {"pca_eigen_vectors": rng.normal(size=(128, 128)), "pca_means": rng.normal(size=means_shape)}
    write_weights(monkeypatch, tmp_path / "w", "vggish_pca", contents)
    params = load_pca_params(tmp_path / "w", download=False)
    assert params["pca_means"].shape == (128,)
    np.testing.assert_array_equal(params["pca_eigen_vectors"].numpy(), contents["pca_eigen_vectors"])
    np.testing.assert_array_equal(params["pca_means"].numpy(), contents["pca_means"].ravel())


# --- VGGish postprocessing and the log-mel front end ------------------------------------------------------------


def test_postprocess_is_the_audioset_formula():
    rng = np.random.default_rng(0)
    eigen_vectors, means = rng.normal(size=(128, 128)) / 8, rng.normal(size=128)
    embeddings = rng.normal(size=(5, 128)) * 4
    params = {"pca_eigen_vectors": torch.from_numpy(eigen_vectors), "pca_means": torch.from_numpy(means)}
    quantised = vggish_postprocess(torch.from_numpy(embeddings).float(), params)
    expected = np.empty((5, 128))
    for row in range(5):
        for out in range(128):
            value = sum(eigen_vectors[out, k] * (np.float32(embeddings[row, k]) - means[k]) for k in range(128))
            expected[row, out] = int((min(max(value, -2.0), 2.0) + 2.0) * 255.0 / 4.0)  # uint8 cast: truncation
    assert quantised.dtype == torch.float32 and quantised.shape == (5, 128)
    np.testing.assert_array_equal(quantised.numpy(), expected)
    assert 0 < (expected == 0).sum() and 0 < (expected == 255).sum()  # both clips reached


def test_postprocess_hand_worked_values():
    params = {"pca_eigen_vectors": torch.eye(128), "pca_means": torch.full((128, 1), 0.5)}
    embedding = torch.full((1, 128), 0.5)
    embedding[0, :4] = torch.tensor([0.5 + 1.0, 0.5 - 3.0, 0.5 + 2.0, 0.5 - 1.99])
    # (w + 2) * 63.75, truncated: w = 0 -> 127.5 -> 127 (not rounded up); 1 -> 191.25; <= -2 -> 0; 2 -> 255
    assert vggish_postprocess(embedding, params)[0, :5].tolist() == [191.0, 0.0, 255.0, 0.0, 127.0]


def oracle_examples(waveform: np.ndarray) -> np.ndarray:
    """The VGGish formulas one frame at a time: periodic Hann, a 512-point DFT written out, HTK mel triangles."""

    def mel(hz):
        return 1127.0 * math.log(1.0 + hz / 700.0)

    edges = [mel(125.0) + i * (mel(7500.0) - mel(125.0)) / 65 for i in range(66)]
    weights = np.zeros((257, 64))
    for k in range(1, 257):  # bin 0 (DC) gets no weight
        bin_mel = mel(k * 8000.0 / 256)
        for band in range(64):
            lower, center, upper = edges[band : band + 3]
            weights[k, band] = max(0.0, min((bin_mel - lower) / (center - lower), (upper - bin_mel) / (upper - center)))
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / 400) for n in range(400)])
    dft = np.exp(-2j * np.pi * np.outer(np.arange(257), np.arange(400)) / 512)  # 400 samples zero-padded to 512
    frames = []
    for start in range(0, len(waveform) - 400 + 1, 160):
        magnitude = np.abs(dft @ (waveform[start : start + 400] * window))
        frames.append(np.log(magnitude @ weights + 0.01))
    count = len(frames) // 96
    return np.array(frames[: count * 96]).reshape(count, 96, 64)


def test_log_mel_examples_equal_the_formulas():
    rng = np.random.default_rng(0)
    seconds = np.arange(int(2.5 * 16000)) / 16000
    waveform = 0.3 * np.sin(2 * np.pi * (200 + 900 * seconds) * seconds) + 0.05 * rng.normal(size=seconds.size)
    examples = waveform_to_examples(waveform.astype(np.float32))
    expected = oracle_examples(waveform.astype(np.float32).astype(np.float64))
    assert examples.dtype == np.float32 and examples.shape == expected.shape == (2, 96, 64)
    np.testing.assert_allclose(examples, expected, rtol=0, atol=1e-5)
    assert waveform_to_examples(np.zeros(160000)).shape == (10, 96, 64)  # 10 s -> 998 frames -> 10 examples
    assert waveform_to_examples(np.zeros(15599)).shape == (0, 96, 64)  # under 0.975 s: no complete example
    assert waveform_to_examples(np.zeros(15600)).shape == (1, 96, 64)


@pytest.mark.parametrize(
    "waveform, sample_rate, fragment",
    [
        (np.zeros(16000), 44100, "sample rate 44100 Hz"),
        (np.zeros((16000, 2)), 16000, "expected mono"),
        (np.zeros(16000, dtype=np.int16), 16000, "int16 samples"),
        (np.full(16000, 12000.0), 16000, "peak amplitude 12000"),
        (np.array([0.0, np.nan] * 8000), 16000, "sample 1 is not finite"),
    ],
)
def test_a_waveform_the_front_end_cannot_take_is_one_line(waveform, sample_rate, fragment):
    with pytest.raises(AvvpError, match=fragment) as error:
        waveform_to_examples(waveform, sample_rate)
    assert "\n" not in str(error.value)
