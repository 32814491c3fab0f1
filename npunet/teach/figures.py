"""`npunet figures --out figures/`: regenerate the README's figures on purpose, by running the lessons
that draw them (full size by default) with their figure folder pointed at --out, and the demo
(predictions.png, training_curves.png) when all lessons run.  A lesson run by
hand writes into ./npunet_figures/ instead, so a rehearsal never rewrites a committed figure."""
import os
import subprocess
import sys
import time

from . import course


def regenerate(out, numbers=None, size="full"):
    """Run the lessons (all, or those numbered in `numbers`) at `size`, figures into `out`.
    Returns 0 when every lesson ran, else 1."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    lessons = course.lessons()
    if numbers:
        lessons = [p for p in lessons if int(os.path.basename(p)[:2]) in set(numbers)]
        if not lessons:
            print(f"npunet figures: no lesson numbered {numbers}", file=sys.stderr)
            return 2
    flag = {"full": [], "class": ["--class"], "fast": ["--fast"]}[size]
    env = dict(os.environ, NPUNET_FIG_DIR=out, MPLBACKEND="Agg")
    env.pop("NPUNET_FAST", None)
    env.pop("NPUNET_CLASS", None)
    failed = []
    for path in lessons:
        before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
        t0 = time.perf_counter()
        print(f"{os.path.basename(path)} ({size}) ...", flush=True)
        r = subprocess.run([sys.executable, path, *flag], env=env, cwd=os.path.dirname(path),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        new = sorted(f for f in os.listdir(out) if before.get(f) != os.path.getmtime(os.path.join(out, f)))
        if r.returncode:
            failed.append(os.path.basename(path))
            print(f"  FAILED (exit {r.returncode}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
        else:
            print(f"  {time.perf_counter() - t0:.0f} s: " + (", ".join(new) if new else "no figures"))
    if not numbers and size == "full":         # predictions.png and training_curves.png: the demo's
        import shutil
        import tempfile
        with tempfile.TemporaryDirectory(prefix="npunet_demo_") as tmp:
            print("npunet demo ...", flush=True)
            r = subprocess.run([sys.executable, "-m", "npunet", "demo", "--out", tmp, "--quiet"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode:
                failed.append("demo")
            else:
                for name in ("predictions.png", "training_curves.png"):
                    shutil.copy(os.path.join(tmp, name), os.path.join(out, name))
                print("  predictions.png, training_curves.png")
    print(f"figures in {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
