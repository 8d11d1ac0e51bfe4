"""A short, bounded run of the token fuzzer (the long run is on demand: see fuzz/)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

FUZZER = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_token.py"


@pytest.mark.slow
def test_token_fuzzer_finds_no_crash_in_a_short_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    # libFuzzer reads ru_maxrss, which a forked child inherits from this (possibly large)
    # test process: allow the fuzzer 2 GB on top of what the parent already reached
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZER),
            "-runs=30000",
            "-max_total_time=60",
            f"-rss_limit_mb={inherited_mb + 2048}",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
