"""Helpers for the lesson scripts in lessons/: flags, step headers, pauses and figure paths.

Flags (ignored when the lesson runs inside Jupyter):
  --fast   small sizes and few iterations (the test suite sets NPUNET_FAST=1 instead)
  --step   pause after every step, for a live class
Figures go to figures/ next to lessons/ (or to $NPUNET_FIG_DIR).
"""
import argparse
import os
import sys


def figure_dir(argv0, cwd):
    """Where a lesson writes its figures: figures/ beside lessons/.  The lessons folder is the
    script's when run as ``python lessons/NN.py``; under Jupyter or VS Code (argv[0] is the
    kernel's launcher) it is the working directory, which they set to the notebook's folder."""
    script = argv0.endswith(".py") and "ipykernel" not in os.path.basename(argv0)
    here = os.path.dirname(os.path.abspath(argv0)) if script else os.path.abspath(cwd)
    base = os.path.dirname(here) if os.path.basename(here) == "lessons" else here
    return os.path.join(base, "figures")


class Lesson:
    def __init__(self, title):
        p = argparse.ArgumentParser(description=title)
        p.add_argument("--fast", action="store_true", help="small sizes, few iterations")
        p.add_argument("--step", action="store_true", help="pause after each step")
        args, _ = p.parse_known_args([a for a in sys.argv[1:] if a.startswith("--")])
        self.fast = args.fast or os.environ.get("NPUNET_FAST") == "1"
        self.pause = args.step and sys.stdin.isatty()
        self.figdir = os.environ.get("NPUNET_FIG_DIR") or figure_dir(sys.argv[0] if sys.argv else "", os.getcwd())
        os.makedirs(self.figdir, exist_ok=True)
        self.n = 0
        print(f"# {title}" + ("   [fast mode]" if self.fast else ""))

    def step(self, title):
        """Print a step header; with --step wait for Enter first."""
        if self.pause and self.n:
            input("\n[press Enter for the next step]")
        self.n += 1
        print(f"\n## Step {self.n}: {title}")

    def fig(self, name):
        return os.path.join(self.figdir, name)

    def done(self, fig):
        """After saving a figure: closed in a script, left open (and so shown) in a notebook."""
        from .viz import finish
        finish(fig)

    def pick(self, full, fast):
        return fast if self.fast else full

    def scratch(self, name):
        """A new temporary folder for a lesson's run outputs, removed when Python exits."""
        import atexit
        import shutil
        import tempfile
        path = tempfile.mkdtemp(prefix=f"npunet_{name}_")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path


def table(rows, header):
    """Print rows (lists) under a header as aligned columns."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    for k, r in enumerate(cols):
        print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
        if k == 0:
            print("  ".join("-" * x for x in w))
