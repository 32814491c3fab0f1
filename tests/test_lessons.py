"""Every lesson runs top to bottom in fast mode (small sizes, few iterations)."""
import glob
import os
import subprocess
import sys

import pytest

LESSONS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "lessons", "[0-9][0-9]_*.py")))


def test_all_lessons_found():
    assert len(LESSONS) == 8


@pytest.mark.parametrize("path", LESSONS, ids=[os.path.basename(p) for p in LESSONS])
def test_lesson_runs_in_fast_mode(path, tmp_path):
    env = dict(os.environ, NPUNET_FAST="1", NPUNET_FIG_DIR=str(tmp_path), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "## Step 1" in r.stdout and "[fast mode]" in r.stdout
    with open(path) as f:
        src = f.read()
    assert src.count("# %%") >= 4  # percent-format cells
    figs = [p for p in tmp_path.rglob("*.png")]
    if "savefig" in src or "draw_architecture" in src or "plot_" in src:
        assert figs, "the lesson promised figures but wrote none"
