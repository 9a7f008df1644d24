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
