"""``npunet bench --cold``: the first second.  ``import npunet`` + the first classroom training step
(8 x 1 x 128^2, BatchNorm U-Net base 16, cross-entropy, Adam: ``prefetch.classroom_step``) in a fresh
process on an empty temporary kernel cache, with the prefetch helper and without it, alternating; next
to PyTorch's ``import torch`` + the same first step when PyTorch is importable (never a dependency).

Each figure is the whole process from outside: wall seconds from start to exit, and the CPU seconds of
that process (the helper's own CPU is not in it: it runs beside, on the other core)."""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

NPUNET_STEP = "from npunet.app.prefetch import classroom_step; classroom_step()"
TORCH_STEP = """
import torch
from npunet.app import torch_twins
from npunet.app.bench import MODEL_CASES
_, cls, cfg, shape, _ = MODEL_CASES["classroom"]
m = torch_twins.build(cls, cfg)
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
x = torch.randn(shape)
t = torch.randint(0, 2, (shape[0],) + shape[2:])
opt.zero_grad()
torch.nn.functional.cross_entropy(m(x), t).backward()
opt.step()
"""


def _run(code, env_extra):
    """(wall seconds, CPU seconds) of ``python -c code`` as a whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env_extra},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        err = res.stderr.strip().splitlines()
        raise RuntimeError(f"npunet bench --cold: the run failed: {err[-1] if err else res.returncode}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _torch_available():
    res = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return res.returncode == 0


def bench_cold(rounds=1, out=print):
    """Cold start, ``rounds`` alternating rounds of: helper on, helper off (each on its own empty cache),
    PyTorch's first step (when importable).  Prints min and median; returns the raw figures."""
    runs = {"helper": [], "no helper": [], "PyTorch": []}
    torch_ok = _torch_available()
    for _ in range(rounds):
        for label, prefetch in (("helper", "1"), ("no helper", "0")):
            with tempfile.TemporaryDirectory(prefix="npunet-cold-") as cache:
                runs[label].append(_run(NPUNET_STEP, dict(NUMBA_CACHE_DIR=cache, NPUNET_PREFETCH=prefetch)))
                if prefetch == "1":
                    time.sleep(2)  # the helper notices its parent's end between two kernels: then delete
        if torch_ok:
            runs["PyTorch"].append(_run(TORCH_STEP, {}))
    out("cold start: import + the first classroom training step (8x1x128^2, BN U-Net base 16, Adam), "
        "empty kernel cache, whole process")
    for label, rows in runs.items():
        if rows:
            walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
            out(f"  {label:10s} wall {min(walls):5.1f} s min, {statistics.median(walls):5.1f} s median; "
                f"CPU {statistics.median(cpus):5.1f} s median (n={len(rows)})")
    return runs
