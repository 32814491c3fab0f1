"""The course travels: `npunet lessons` lists and copies the lessons and exercises, `npunet check` works
in any folder, `--version`; and (slow, CI) all of it from a wheel installed in a fresh venv."""
import glob
import os
import re
import subprocess
import sys

import pytest

import npunet
from npunet.teach import course

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _npunet(*args, cwd, python=sys.executable, env=None, timeout=600):
    return subprocess.run([python, "-m", "npunet", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_version_from_the_metadata_and_dir_lists_the_lazy_submodules(tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        want = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert npunet.__version__ == want
    r = _npunet("--version", cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == f"npunet {want}"
    for name in ("models", "losses", "metrics", "optim", "data", "train", "viz", "summary"):
        assert name in dir(npunet)


def test_lessons_lists_number_title_and_run_times(tmp_path):
    r = _npunet("lessons", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for path in course.lessons():
        n, title, times = course.header(path)
        assert set(times) == {"full", "class", "fast"}, (path, times)
        line = next(l for l in r.stdout.splitlines() if l.strip().startswith(f"{n} "))
        assert title in line and times["full"] in line and times["fast"] in line
    assert len(course.lessons()) == len(glob.glob(os.path.join(ROOT, "lessons", "[0-9][0-9]_*.py"))) >= 9
    assert "conv2d" in r.stdout and "unet3p_stage" in r.stdout


def test_copy_brings_lessons_and_exercises_but_not_the_solutions(tmp_path):
    dest = tmp_path / "course"
    r = _npunet("lessons", "--copy", str(dest), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    py = sorted(os.path.relpath(p, dest) for p in glob.glob(str(dest / "**" / "*.py"), recursive=True))
    assert len(py) == len(course.lessons()) + 9 and "02_unet_2015.py" in py and os.path.join("exercises", "01_conv2d.py") in py
    assert not (dest / "exercises" / "solutions").exists()
    try:
        import jupytext  # noqa: F401
        assert (dest / "02_unet_2015.ipynb").is_file() and (dest / "exercises" / "01_conv2d.ipynb").is_file()
    except ImportError:
        assert "jupytext is not installed" in r.stdout
    (dest / "02_unet_2015.py").write_text("# my notes\n")
    _npunet("lessons", "--copy", str(dest), cwd=str(tmp_path))
    assert (dest / "02_unet_2015.py").read_text() == "# my notes\n"            # a student's work is kept


@pytest.mark.slow
def test_from_a_wheel_in_a_fresh_venv_outside_the_repository(tmp_path):
    """A student with only the wheel and a terminal: list, copy, run a lesson (--fast), check a renamed
    file, check the solution."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), ROOT],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = glob.glob(str(wheels / "npunet-*.whl"))
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "npunet/course/02_unet_2015.py" in names and "npunet/course/exercises/solutions/01_conv2d.py" in names
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NPUNET_FIG_DIR", "NPUNET_FAST")}
    env["MPLBACKEND"] = "Agg"                      # no PYTHONPATH: pip and Python must not see the clone
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300,
                   env=env)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", wheel], capture_output=True, text=True,
                       timeout=600, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    home = tmp_path / "student"
    home.mkdir()
    r = _npunet("--version", cwd=str(home), python=py, env=env)
    assert r.returncode == 0 and r.stdout.startswith("npunet "), r.stderr
    where = subprocess.run([py, "-c", "import npunet; print(npunet.__file__)"], capture_output=True, text=True,
                           cwd=str(home), env=env).stdout
    assert str(venv) in where                                                   # the installed copy, not the clone
    r = _npunet("lessons", cwd=str(home), python=py, env=env)
    assert r.returncode == 0 and "U-Net (2015)" in r.stdout, r.stderr
    r = _npunet("lessons", "--copy", "course", cwd=str(home), python=py, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([py, "06_losses_and_metrics.py", "--fast"], cwd=str(home / "course"), capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (home / "course" / "npunet_figures" / "loss_gradients.png").is_file()
    solution = os.path.join(ROOT, "lessons", "exercises", "solutions", "01_conv2d.py")
    (home / "my_attempt.py").write_text(open(solution).read())
    r = _npunet("check", "conv2d", "my_attempt.py", cwd=str(home), python=py, env=env)
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr
    r = _npunet("check", "conv2d", "--solution", cwd=str(home), python=py, env=env)
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr
    r = _npunet("check", "course/exercises/01_conv2d.py", cwd=str(home), python=py, env=env)
    assert r.returncode == 1 and "not written yet: conv2d_forward" in r.stdout, r.stdout + r.stderr
