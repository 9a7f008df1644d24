"""The finetune loop's data path: whole splits in memory, batches cut by one index per tensor."""

import torch

from avvp.annotations import WeakLabels, write_weak_labels
from avvp.finetune.data import SplitData, load_split_data, make_loader
from avvp.store import write_store


def _split(n: int = 10) -> SplitData:
    generator = torch.Generator().manual_seed(0)
    features = {
        "audio": torch.randn(n, 10, 3, generator=generator),
        "visual": torch.randn(n, 10, 5, generator=generator),
    }
    return SplitData("train", [f"v{i}" for i in range(n)], features, torch.rand(n, 25, generator=generator))


def test_an_epoch_serves_every_video_once_with_its_own_rows():
    data = _split()
    loader = make_loader(data, batch_size=4, shuffle=True, seed=3)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [4, 4, 2]
    index = torch.cat([b["index"] for b in batches])
    assert sorted(index.tolist()) == list(range(10)) and index.tolist() != list(range(10))
    for batch in batches:
        assert torch.equal(batch["audio"], data.features["audio"][batch["index"]])
        assert torch.equal(batch["visual"], data.features["visual"][batch["index"]])
        assert torch.equal(batch["labels"], data.labels[batch["index"]])


def test_the_order_depends_on_seed_and_epoch_only():
    def order(seed: int, epoch: int) -> list[int]:
        loader = make_loader(_split(), batch_size=4, shuffle=True, seed=seed)
        loader.batch_sampler.sampler.set_epoch(epoch)
        return torch.cat([b["index"] for b in loader]).tolist()

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)
    assert [b["index"].tolist() for b in make_loader(_split(), 4, shuffle=False)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def test_a_split_moved_to_a_device_is_batched_there():
    # "meta" stands in for a GPU: tensors with shapes and a device, no data
    data = _split().to("meta")
    assert data.video_ids == _split().video_ids and data.widths == {"audio": 3, "visual": 5}
    batch = next(iter(make_loader(data, batch_size=4, shuffle=True)))
    assert all(t.device.type == "meta" for t in batch.values())
    assert batch["audio"].shape == (4, 10, 3) and batch["labels"].shape == (4, 25)


def test_a_float16_store_stays_float16_in_memory_and_batches_are_float32(tmp_path):
    generator = torch.Generator().manual_seed(1)
    video_ids = [f"video{i:06d}_0_10" for i in range(6)]
    streams = {"audio": torch.randn(6, 10, 3, generator=generator).half().numpy()}
    write_store(tmp_path / "llp.h5", video_ids, streams, dtype="float16")
    labels = torch.rand(6, 25, generator=generator).numpy() < 0.2
    write_weak_labels(tmp_path / "AVVP_train.csv", WeakLabels(video_ids=video_ids, labels=labels))
    data = load_split_data(tmp_path / "llp.h5", tmp_path, "train", ("audio",))
    assert data.features["audio"].dtype == torch.float16
    batch = next(iter(make_loader(data, batch_size=4, shuffle=False)))
    assert batch["audio"].dtype == torch.float32
    assert torch.equal(batch["audio"], torch.from_numpy(streams["audio"][:4]).float())
