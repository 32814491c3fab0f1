"""Helpers for the lesson scripts in lessons/: flags, step headers, pauses and figure paths.

Flags (ignored when the lesson runs inside Jupyter):
  --fast   small sizes and few iterations (the test suite sets NPUNET_FAST=1 instead)
  --step   pause after every step, for a live class
Figures go to figures/ next to lessons/ (or to $NPUNET_FIG_DIR).
"""
import argparse
import os
import sys


class Lesson:
    def __init__(self, title):
        p = argparse.ArgumentParser(description=title)
        p.add_argument("--fast", action="store_true", help="small sizes, few iterations")
        p.add_argument("--step", action="store_true", help="pause after each step")
        args, _ = p.parse_known_args([a for a in sys.argv[1:] if a.startswith("--")])
        self.fast = args.fast or os.environ.get("NPUNET_FAST") == "1"
        self.pause = args.step and sys.stdin.isatty()
        here = os.path.dirname(os.path.abspath(sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else "."))
        default = os.path.join(os.path.dirname(here), "figures") if os.path.basename(here) == "lessons" else \
            os.path.join(here, "figures")
        self.figdir = os.environ.get("NPUNET_FIG_DIR", default)
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

    def pick(self, full, fast):
        return fast if self.fast else full


def table(rows, header):
    """Print rows (lists) under a header as aligned columns."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    for k, r in enumerate(cols):
        print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
        if k == 0:
            print("  ".join("-" * x for x in w))
