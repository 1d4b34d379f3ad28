"""DD-Ranking's trainer and ddbench's on the same exported set (``ddranking_crosscheck.py``).

Runs only where DD-Ranking is installed in its own environment, named by ``DDRANKING_PYTHON``
(e.g. ``/tmp/ddr/bin/python`` after ``python -m venv --system-site-packages /tmp/ddr &&
/tmp/ddr/bin/pip install ddranking==0.2.0``): real colour data from ``../shared/data``, random
real images at IPC 10, a short budget. Both trainers must learn (well above chance) and agree
within 10 points; the timed figures belong to the script run with a full budget.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO.parent / "shared" / "data" / "tiny-imagenet-10"


@pytest.mark.skipif(not os.environ.get("DDRANKING_PYTHON"), reason="DD-Ranking is not installed (set DDRANKING_PYTHON)")
@pytest.mark.skipif(not TINY.is_dir(), reason="../shared/data/tiny-imagenet-10 is absent")
def test_ddranking_and_ddbench_trainers_agree_on_an_exported_set(tmp_path):
    data = ["--dataset", "imagefolder", "--data-root", str(TINY), "--image-size", "32", "--observer-epochs", "1",
            "--cache-dir", str(tmp_path / "cache")]
    made = subprocess.run([sys.executable, "-m", "ddbench", "run", "--method", "random", *data, "--seeds", "1",
                           "--budget-set", "epochs=1", "--out", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    saved = next((tmp_path / "run" / "distilled").glob("random-*.safetensors"))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ddranking_crosscheck.py"), str(saved), *data,
                           "--ddranking-dataset", "ImageNette", "--ddranking-python", os.environ["DDRANKING_PYTHON"],
                           "--epochs", "30", "--seeds", "2", "--out", str(tmp_path / "check")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    theirs, ours = (float(m) for m in re.findall(r"(?:trainer|\)): (\d+\.\d+) ±", done.stdout))
    assert theirs > 15 and ours > 15  # ten classes: chance is 10
    assert abs(theirs - ours) < 10
