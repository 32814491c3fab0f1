"""Helpers for the lesson scripts in lessons/: sizes, step headers, pauses and figure paths.

Flags (ignored when the lesson runs inside Jupyter):
  --fast   small sizes and few iterations: seconds (the test suite sets NPUNET_FAST=1 instead)
  --class  the size for a 90-minute class: the full sizes where they are cheap, short training runs
  --step   for a live class: before each step print its text (the notebook's markdown) and, after it,
           show its figures and wait for Enter
Without a flag a lesson runs at full size (the numbers quoted in its text). Figures go to
./npunet_figures/ under the working directory (or to $NPUNET_FIG_DIR), never into the repository's
figures/: `npunet figures --out figures/` regenerates those on purpose.
"""
import argparse
import os
import sys
import time


FIGURES = "npunet_figures"


def figure_dir(cwd):
    """Where a lesson writes its figures: npunet_figures/ under the working directory (under Jupyter or
    VS Code the notebook's folder), so that running a lesson never rewrites a committed file."""
    return os.path.join(os.path.abspath(cwd), FIGURES)


def markdown_cells(path):
    """The markdown cells of a percent-format script, as text without the leading '# '."""
    cells, cur = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# %%"):
                if cur is not None:
                    cells.append("".join(cur).rstrip())
                cur = [] if "[markdown]" in line else None
            elif cur is not None:
                cur.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    if cur is not None:
        cells.append("".join(cur).rstrip())
    return cells


def step_text(cells, n):
    """The markdown cell that starts with '## Step n:' (without that header line), or ''."""
    for c in cells:
        first, _, rest = c.partition("\n")
        if first.startswith(f"## Step {n}:"):
            return rest.strip()
    return ""


class Lesson:
    def __init__(self, title):
        p = argparse.ArgumentParser(description=title)
        p.add_argument("--fast", action="store_true", help="small sizes, few iterations (seconds)")
        p.add_argument("--class", dest="klass", action="store_true", help="the size for a 90-minute class")
        p.add_argument("--step", action="store_true", help="print each step's text, show its figures, pause")
        args, _ = p.parse_known_args([a for a in sys.argv[1:] if a.startswith("--")])
        self.fast = args.fast or os.environ.get("NPUNET_FAST") == "1"
        self.size = "fast" if self.fast else "class" if args.klass or os.environ.get("NPUNET_CLASS") == "1" else "full"
        self.pause = args.step and sys.stdin.isatty()
        self.narrate = args.step
        self.figdir = os.environ.get("NPUNET_FIG_DIR") or figure_dir(os.getcwd())
        os.makedirs(self.figdir, exist_ok=True)
        self.n = 0
        script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else ""
        self.cells = markdown_cells(script) if self.narrate and os.path.isfile(script) else []
        self.screen = False
        if self.narrate:
            import matplotlib
            from ..viz import plots
            self.screen = "agg" not in matplotlib.get_backend().lower()
            plots.KEEP_OPEN = self.screen
        self.t0 = time.perf_counter()
        self._seen = self._figures()
        print(f"# {title}" + ("" if self.size == "full" else f"   [{self.size} mode]"))
        if self.narrate and self.cells:
            print(self.cells[0].partition("\n")[2].strip())

    def _figures(self):
        return {f: os.path.getmtime(os.path.join(self.figdir, f)) for f in os.listdir(self.figdir)
                if f.endswith(".png")}

    def _end_of_step(self):
        """--step: show (or name) the figures the step made, then wait for Enter."""
        now = self._figures()
        new = sorted(f for f, t in now.items() if self._seen.get(f) != t)
        self._seen = now
        if self.screen:
            import matplotlib.pyplot as plt
            if plt.get_fignums():
                plt.show(block=False)
                plt.pause(0.5)
        elif new:
            print("\n[figures written: " + ", ".join(os.path.join(self.figdir, f) for f in new) + "]")
        if self.pause:
            input("\n[press Enter for the next step]")
        if self.screen:
            import matplotlib.pyplot as plt
            plt.close("all")

    def step(self, title):
        """Print a step header; with --step, first finish the previous step (figures, pause) and then
        print this step's text."""
        if self.narrate and self.n:
            self._end_of_step()
        self.n += 1
        print(f"\n## Step {self.n}: {title}")
        if self.narrate:
            text = step_text(self.cells, self.n)
            if text:
                print(text + "\n")

    def fig(self, name):
        return os.path.join(self.figdir, name)

    def done(self, fig):
        """After saving a figure: closed in a script, left open (and so shown) in a notebook."""
        from ..viz import finish
        finish(fig)

    def pick(self, full, fast, klass=None):
        """The value for this run's size: fast, class (defaults to full: cheap sizes stay full) or full."""
        if self.size == "fast":
            return fast
        return klass if self.size == "class" and klass is not None else full

    def scratch(self, name):
        """A new temporary folder for a lesson's run outputs, removed when Python exits."""
        import atexit
        import shutil
        import tempfile
        path = tempfile.mkdtemp(prefix=f"npunet_{name}_")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path

    def finish(self):
        """The last line of a lesson: how long it took at this size."""
        if self.narrate and self.n:
            self._end_of_step()
        print(f"\n[{self.size} run: {time.perf_counter() - self.t0:.0f} s; figures in {self.figdir}]")


def table(rows, header):
    """Print rows (lists) under a header as aligned columns."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    for k, r in enumerate(cols):
        print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
        if k == 0:
            print("  ".join("-" * x for x in w))
