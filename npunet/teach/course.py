"""The course material installed with npunet: the lessons, the exercises and their solutions.

In the repository they live in lessons/ (top level); a wheel carries the same files as the package
data npunet/course/ (setup.py maps one onto the other).  ``npunet lessons`` lists them, ``npunet
lessons --copy DIR`` copies the lessons and exercises (not the solutions) into a folder the student
owns, with .ipynb twins when jupytext is installed.
"""
import glob
import os
import re
import shutil

_SIZES = (("full", r"full"), ("class", r"`?--class`?"), ("fast", r"`?--fast`?"))
_TIME = r"(\d+(?:\.\d+)? ?(?:min(?: \d+ ?s)?|s|h))"


def root():
    """The folder that holds the lessons (NN_name.py) and exercises/ (with solutions/)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))            # the npunet package
    for p in (os.path.join(here, "course"), os.path.join(os.path.dirname(here), "lessons")):
        if os.path.isdir(os.path.join(p, "exercises")):
            return p
    raise FileNotFoundError(f"npunet's course material is missing (neither {os.path.join(here, 'course')} nor the "
                            f"repository's lessons/): reinstall npunet")


def lessons():
    """The lesson scripts, in order."""
    return sorted(glob.glob(os.path.join(root(), "[0-9][0-9]_*.py")))


def exercises(solutions=False):
    d = os.path.join(root(), "exercises", "solutions" if solutions else "")
    return sorted(glob.glob(os.path.join(d, "[0-9][0-9]_*.py")))


def header(path):
    """(number, title, {size: run time}) from a lesson's or exercise's first markdown cell:
    '# # Lesson 2: U-Net (2015), block by block' and '... full 21 s, `--class` 8 s, `--fast` 5 s'."""
    with open(path, encoding="utf-8") as f:
        head = []
        for line in f:
            if head and line.startswith("# %%"):
                break
            head.append(line)
    text = "".join(head)
    m = re.search(r"^# # (?:Lesson|Exercise) (\d+): (.*)$", text, re.M)
    number, title = (int(m.group(1)), m.group(2).strip()) if m else (int(os.path.basename(path)[:2]), os.path.basename(path))
    times = {}
    for size, pat in _SIZES:
        t = re.search(pat + r" " + _TIME, text)
        if t:
            times[size] = t.group(1)
    return number, title, times


def listing():
    """The text `npunet lessons` prints."""
    rows = [header(p) + (os.path.basename(p),) for p in lessons()]
    lines = [f"npunet's lessons ({root()}):", ""]
    w = max(len(r[1]) for r in rows)
    lines.append(f"  {'#':>2}  {'title':{w}}  {'full':>9}  {'--class':>9}  {'--fast':>7}")
    for n, title, t, _ in rows:
        lines.append(f"  {n:>2}  {title:{w}}  {t.get('full', '?'):>9}  {t.get('class', '?'):>9}  {t.get('fast', '?'):>7}")
    lines += ["", "exercises (check one with `npunet check NAME [FILE]`):"]
    from .exercises import EXERCISES
    by_file = {e.file: e.name for e in EXERCISES.values()}
    for p in exercises():
        n, title, _ = header(p)
        lines.append(f"  {n:>2}  {by_file.get(os.path.basename(p), '?'):13s} {title}")
    lines += ["", "Run times on a 2-core CPU with Numba's cache warm.  Copy them into a folder of your own with "
              "`npunet lessons --copy DIR`, then `python DIR/02_unet_2015.py --fast` or open them as notebooks."]
    return "\n".join(lines)


def copy(dest, solutions=False, notebooks=True):
    """Copy the lessons and the exercises (the solutions only when asked) into dest; .ipynb twins via
    jupytext when it is importable.  Existing files are kept (a student's work is never overwritten).
    Returns (written, kept) lists of paths."""
    pairs = [(p, os.path.join(dest, os.path.basename(p))) for p in lessons()]
    pairs += [(p, os.path.join(dest, "exercises", os.path.basename(p))) for p in exercises()]
    if solutions:
        pairs += [(p, os.path.join(dest, "exercises", "solutions", os.path.basename(p))) for p in exercises(True)]
    try:
        import jupytext
    except ImportError:
        jupytext = None
    written, kept = [], []
    for src, dst in pairs:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        targets = [dst] + ([dst[:-3] + ".ipynb"] if jupytext is not None and notebooks else [])
        for t in targets:
            if os.path.exists(t):
                kept.append(t)
                continue
            if t.endswith(".ipynb"):
                jupytext.write(jupytext.read(src), t)
            else:
                shutil.copyfile(src, t)
            written.append(t)
    return written, kept
