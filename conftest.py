"""Suite-wide: where the data is missing, notebooks that read it are skipped (not failed), and the
summary says how many tests the missing data skipped and how to get it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests on hypothesis' fixed example sequence, so a green main stays green;
# HYPOTHESIS_PROFILE=explore draws new examples on each run (for hunting bugs locally)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NO_DATA = "data not found in"  # tests/conftest.py's data_root fixture skips with this reason too
NEEDS_NO_DATA = {"00_sanity.ipynb"}  # model parity and the optimizer check run on random weights


def _data_root() -> Path:
    return Path(os.environ.get("MINBERT_DATA", "data"))


def pytest_collection_modifyitems(config, items):
    root = _data_root()
    if (root / "ids-sst-train.csv").is_file():
        return
    skip = pytest.mark.skip(reason=f"{NO_DATA} {root}: set MINBERT_DATA (CI uses ../shared/data)")
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and path.name not in NEEDS_NO_DATA:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A green run that skipped most of the suite must not read as a pass."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_DATA in str(r.longrepr)]
    if skipped:
        root = _data_root().resolve()
        terminalreporter.write_sep("=", f"{len(skipped)} tests skipped: no data in {root}", yellow=True, bold=True)
        terminalreporter.write_line(f"get it with `minbert data fetch --dest {root}` (needs internet), or point "
                                    "MINBERT_DATA at a folder holding the CS224N files; then run the tests again")
