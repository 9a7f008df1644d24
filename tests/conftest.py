"""Shared fixtures."""

from pathlib import Path

import pytest

SHARED_LLP = Path(__file__).resolve().parents[1].parent / "shared" / "llp"


@pytest.fixture(scope="session")
def real_llp() -> Path:
    """The real LLP annotation files in ../shared/llp; the test is skipped where they are absent."""
    if not (SHARED_LLP / "AVVP_test_pd.csv").is_file():
        pytest.skip("../shared/llp (real LLP annotations) not present")
    return SHARED_LLP


@pytest.fixture(scope="session")
def tiny_llp(tmp_path_factory) -> Path:
    """An LLP-sim `tiny` corpus (seed 0): llp.h5, pretrain.h5 and the five LLP annotation files, in one folder."""
    from avvp.synth import synthesize

    out = tmp_path_factory.mktemp("tiny_llp")
    synthesize(out, preset="tiny", seed=0)
    return out


@pytest.fixture
def run_avvp(monkeypatch, capsys):
    """Run the `avvp` command line in-process as a user would: returns (exit code, stdout, stderr)."""
    import sys

    from avvp.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["avvp", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run
