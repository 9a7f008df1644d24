"""avvp.benchmarks.bench_finetune: the rows it times, and its throughput-only mode end to end on a few videos."""

from avvp.benchmarks.bench_finetune import run, throughput_rows
from avvp.finetune.models import PAPER_ROWS


def test_every_paper_row_and_the_release_nets_that_differ_are_timed():
    rows = throughput_rows()
    assert [label for label, _, _ in rows[: len(PAPER_ROWS)]] == list(PAPER_ROWS)
    # Under the release recipe Base and Base+GCAA train a discriminator; the other rows keep their nets.
    assert rows[len(PAPER_ROWS) :] == [
        ("base (release)", "base", "release"),
        ("base-gcaa (release)", "base-gcaa", "release"),
    ]


def test_throughput_only_reports_a_speed_per_row():
    lines = run(videos=1000, throughput_videos=8, paper_videos=8, device="cpu", throughput_only=True)
    assert lines[1].startswith("corpus: 8 train videos")  # the throughput corpus alone, no .npy files
    table = {line.split()[0] + (" (release)" if "(release)" in line else ""): line for line in lines[4:]}
    assert sorted(table) == sorted(label for label, _, _ in throughput_rows())
    for line in table.values():
        demo, paper = map(float, line.split()[-2:])
        assert demo > 0 and paper > 0
    assert not any("npy" in line for line in lines)
