"""Every lesson runs top to bottom in fast mode (small sizes, few iterations)."""
import glob
import os
import subprocess
import sys

import pytest

LESSONS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "lessons", "[0-9][0-9]_*.py")))


def test_all_lessons_found():
    assert len(LESSONS) == 11


@pytest.mark.parametrize("path", LESSONS, ids=[os.path.basename(p) for p in LESSONS])
def test_lesson_runs_in_fast_mode(path, tmp_path):
    env = dict(os.environ, NPUNET_FAST="1", NPUNET_FIG_DIR=str(tmp_path), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "## Step 1" in r.stdout and "[fast mode]" in r.stdout and "[fast run:" in r.stdout
    with open(path) as f:
        src = f.read()
    assert src.count("# %%") >= 4  # percent-format cells
    figs = [p for p in tmp_path.rglob("*.png")]
    if "savefig" in src or "draw_" in src or "plot_" in src:
        assert figs, "the lesson promised figures but wrote none"


def test_figures_go_under_the_working_directory_never_into_the_repositorys_figures(tmp_path):
    from npunet.lesson import figure_dir
    assert figure_dir(str(tmp_path)) == os.path.join(str(tmp_path), "npunet_figures")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    assert figure_dir(os.path.join(root, "lessons")) != os.path.join(root, "figures")


def test_a_lesson_run_from_a_clone_leaves_git_status_clean():
    """A teacher's rehearsal: `python lessons/06_losses_and_metrics.py --fast` from the clone's root
    writes its figures into ./npunet_figures/ (ignored by git) and changes no tracked file."""
    import shutil
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if not os.path.isdir(os.path.join(root, ".git")):
        pytest.skip("not a git clone")
    status = lambda: subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout
    figs = os.path.join(root, "npunet_figures")
    existed = os.path.isdir(figs)
    before = status()
    env = {k: v for k, v in os.environ.items() if k not in ("NPUNET_FIG_DIR", "NPUNET_FAST")}
    try:
        r = subprocess.run([sys.executable, os.path.join("lessons", "06_losses_and_metrics.py"), "--fast"], cwd=root,
                           capture_output=True, text=True, env=dict(env, MPLBACKEND="Agg"), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert os.path.isfile(os.path.join(figs, "loss_gradients.png"))
        assert "figures in " + figs in r.stdout
        assert status() == before
    finally:
        if not existed:
            shutil.rmtree(figs, ignore_errors=True)


@pytest.mark.parametrize("backend,stays_open", [("Agg", False), ("module://matplotlib_inline.backend_inline", True)])
def test_figures_stay_open_for_a_notebook(backend, stays_open):
    code = ("import matplotlib.pyplot as plt; from npunet.viz import finish; fig = plt.figure(); finish(fig); "
            "print(plt.fignum_exists(fig.number))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, MPLBACKEND=backend), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(stays_open)


@pytest.mark.parametrize("path", LESSONS, ids=[os.path.basename(p) for p in LESSONS])
def test_lesson_runs_as_a_notebook_and_shows_its_figures(path, tmp_path, monkeypatch):
    """Opened as a notebook (jupytext), executed cell by cell in a Jupyter kernel (nbclient), fast mode:
    no cell fails, figures are written to NPUNET_FIG_DIR and shown inline."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("NPUNET_FAST", "1")
    monkeypatch.setenv("NPUNET_FIG_DIR", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    nb = jupytext.read(path)
    assert nb.cells[0].cell_type == "markdown" and sum(c.cell_type == "code" for c in nb.cells) >= 4
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    with open(path) as f:
        src = f.read()
    if "savefig" in src or "draw_" in src or "plot_" in src:
        assert list(tmp_path.rglob("*.png")), "the lesson promised figures but wrote none"
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown inline"


def test_step_mode_prints_each_steps_text_and_names_its_figures(tmp_path):
    """--step (stdin not a terminal here, so no pause): before each step's code its markdown is
    printed; after it, the figures it wrote are named (Agg: no screen to show them on)."""
    path = os.path.join(os.path.dirname(__file__), "..", "lessons", "06_losses_and_metrics.py")
    env = dict(os.environ, NPUNET_FAST="1", NPUNET_FIG_DIR=str(tmp_path), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, path, "--step"], capture_output=True, text=True, env=env, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    from npunet.lesson import markdown_cells, step_text
    cells = markdown_cells(path)
    text = step_text(cells, 3)
    assert text and text.splitlines()[0] in r.stdout              # step 3's explanation, printed
    assert r.stdout.index(text.splitlines()[0]) > r.stdout.index("## Step 3:")
    assert "[figures written: " + os.path.join(str(tmp_path), "loss_gradients.png") in r.stdout


def test_sizes_fast_class_full(monkeypatch):
    from npunet.lesson import Lesson
    monkeypatch.delenv("NPUNET_FAST", raising=False)
    monkeypatch.delenv("NPUNET_CLASS", raising=False)
    for argv, size in ((["l.py"], "full"), (["l.py", "--class"], "class"), (["l.py", "--fast"], "fast")):
        monkeypatch.setattr(sys, "argv", argv)
        L = Lesson("t")
        assert L.size == size
        assert L.pick(10, 1, klass=4) == {"full": 10, "class": 4, "fast": 1}[size]
        assert L.pick(10, 1) == {"full": 10, "class": 10, "fast": 1}[size]   # class keeps cheap full sizes


@pytest.mark.parametrize("path", LESSONS, ids=[os.path.basename(p) for p in LESSONS])
def test_lesson_states_its_run_time_at_each_size(path):
    import re
    from npunet.lesson import markdown_cells
    first = markdown_cells(path)[0]
    assert re.search(r"full \d+ (s|min)[^,]*, `--class` \d+ (s|min)[^,]*, `--fast` \d+ (s|min)", first), first
