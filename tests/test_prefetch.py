"""The prefetch helper (npunet.app.prefetch): its plans cover the runs they are for, it compiles into the
shared cache, exits with the process that started it, and two writers of one kernel keep both entries."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import npunet
from npunet import jitcache
from npunet.app import prefetch

ROOT = Path(npunet.__file__).parent.parent


def _python(code, **env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=600)


# Every npunet kernel signature a run holds afterwards (compiled or loaded from the cache), in a fresh
# process, so none comes from an earlier test.
USED = """
import json, sys, importlib
from numba.core.dispatcher import Dispatcher
from npunet.app import prefetch
prefetch.RUNS[sys.argv[1] if len(sys.argv) > 1 else {run!r}]()
used = []
for name, mod in list(sys.modules.items()):
    if not name.startswith("npunet.") or mod is None:
        continue
    for attr, f in vars(mod).items():
        if isinstance(f, Dispatcher) and f.py_func.__module__ == name:
            used += [(name, f.py_func.__qualname__, repr(tuple(sig))) for sig in f.signatures]
json.dump(used, sys.stdout)
"""


@pytest.mark.parametrize("run", ["classroom", "demo"])
def test_plan_covers_every_kernel_the_run_uses(run):
    """A kernel whose arguments changed (or a new kernel on the run's path) fails here with its name:
    re-record the plans with ``python -m npunet.app.prefetch --record``."""
    out = _python(USED.format(run=run))
    assert out.returncode == 0, out.stderr[-2000:]
    used = {tuple(u) for u in json.loads(out.stdout)}
    assert len(used) >= 10, used  # the run went through the fast backend's kernels
    plan = set(prefetch.PLANS[run])
    missing = sorted(used - plan)
    assert not missing, f"not in PLANS[{run!r}]: {missing}"


def test_every_plan_entry_names_a_kernel_and_parses():
    from numba.core import types
    from numba.core.dispatcher import Dispatcher
    import importlib
    for name, plan in prefetch.PLANS.items():
        assert len(set(plan)) == len(plan), f"{name}: an entry twice"
        for module, kernel, args in plan:
            f = getattr(importlib.import_module(module), kernel)
            assert isinstance(f, Dispatcher), (module, kernel)
            sig = prefetch.parse_types(args)
            assert isinstance(sig, tuple) and all(isinstance(t, types.Type) for t in sig), args
            assert repr(sig) == args  # what the recorder wrote is what the helper asks Numba for


def test_parse_types_reads_only_type_names():
    with pytest.raises(Exception):
        prefetch.parse_types("__import__('os')")


def test_helper_compiles_into_the_shared_cache_and_exits_with_its_parent(tmp_path):
    """A cold compilation starts the helper; its first kernel (the plan's last) lands in the same cache;
    when the parent ends, the helper stops after at most one more kernel."""
    code = ("import os, sys, time, numpy as np, npunet; from npunet import jitcache\n"
            "from npunet.kernels.util import all_finite\n"
            "assert all_finite(np.zeros(1 << 17, np.float32))\n"  # the first real compilation starts the helper
            "h = jitcache._state['helper']; print(h.pid if h else 0, flush=True); sys.stdin.read()\n")
    env = dict(os.environ, NPUNET_PREFETCH="1", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NPUNET_PREFETCH_PARENT", None)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=env, cwd=str(ROOT))
    try:
        helper = int(p.stdout.readline())
        assert helper > 0, "no helper started on a cold cache"
        first = prefetch.PLANS["classroom"][-1]  # the helper walks the plan back to front
        deadline = time.time() + 120
        while time.time() < deadline and not _cached(tmp_path, first):
            time.sleep(0.2)
        assert _cached(tmp_path, first), "the helper's first kernel did not reach the shared cache"
    finally:
        p.stdin.close()  # the parent ends
        p.wait(timeout=60)
    deadline = time.time() + 30  # the longest kernel compiles in ~1.5 s
    while time.time() < deadline and _alive(helper):
        time.sleep(0.2)
    assert not _alive(helper), "the helper outlived its parent"
    assert not _cached(tmp_path, prefetch.PLANS["classroom"][1]), "the helper went on to the end"


def test_start_only_when_something_is_missing(monkeypatch):
    from npunet import jitcache as jc
    started = []
    monkeypatch.setattr(jc, "start_helper", lambda plan: started.append(plan) or "helper")
    monkeypatch.setattr(jc, "has_index", lambda module, kernel: True)
    assert prefetch.start("demo") is None and started == []
    monkeypatch.setattr(jc, "has_index", lambda module, kernel: kernel != "bn_backward")
    assert prefetch.start("demo") == "helper" and started == ["demo"]


def test_has_index_sees_a_compiled_kernel():
    import numpy as np
    from npunet import jitcache as jc
    from npunet.kernels.util import all_finite
    if jc.cache_root() is None:
        pytest.skip("no writable cache here")
    assert all_finite(np.zeros(1 << 17, np.float32))  # compiled or loaded: cached either way
    assert jc.has_index("npunet.kernels.util", "_finite_rows")
    assert not jc.has_index("npunet.kernels.util", "no_such_kernel")


def _cached(cache, step):
    module, kernel, _ = step
    return jitcache.has_index(module, kernel, root=cache)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended (its parent is gone, init reaps it)
    except OSError:
        return False


TWO_WRITERS = """
import sys, numpy as np, npunet
from npunet.kernels.util import all_finite
dtype = np.float32 if sys.argv[1] == "32" else np.float64
assert all_finite(np.zeros(1 << 10, dtype))
assert not all_finite(np.array([0, np.nan], dtype))
"""

LOAD_BOTH = """
import numpy as np, npunet
from npunet.kernels import util
from numba.core import event
compiled = []
class L(event.Listener):
    def on_start(self, ev): compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev): pass
event.register("numba:compile", L())
for dtype in (np.float32, np.float64):
    assert util.all_finite(np.ones(1 << 10, dtype)) and not util.all_finite(np.array([np.inf], dtype))
print(sorted(set(compiled)))
"""


@pytest.mark.skipif(jitcache.fcntl is None, reason="no file locks here (and so no helper)")
def test_two_processes_writing_one_kernel_keep_both_entries(tmp_path):
    """Two processes compile two signatures of one kernel into one cache at once; a third finds both."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NPUNET_PREFETCH="0")
    procs = [subprocess.Popen([sys.executable, "-c", TWO_WRITERS, bits], env=env, cwd=str(ROOT),
                              stderr=subprocess.PIPE, text=True) for bits in ("32", "64")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    out = _python(LOAD_BOTH, NUMBA_CACHE_DIR=str(tmp_path), NPUNET_PREFETCH="0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "_finite_rows" not in out.stdout, f"an entry was lost: {out.stdout}"
    from numba.core import caching
    assert getattr(caching.IndexDataCacheFile.save, "_npunet_locked", False)


def test_helper_is_off_when_asked_or_in_the_helper():
    assert not jitcache.helper_wanted({"NPUNET_PREFETCH": "0"})
    assert not jitcache.helper_wanted({"NPUNET_PREFETCH_PARENT": "123"})
    if jitcache.cache_root() is not None and jitcache.fcntl is not None and (os.cpu_count() or 1) >= 2:
        assert jitcache.helper_wanted({})


def test_bench_cold_alternates_and_reports(monkeypatch):
    """npunet bench --cold: helper on, helper off, each on its own empty cache, per round; one row each."""
    from npunet.app import bench_cold
    calls = []

    def fake_run(code, env):
        calls.append((code, env.get("NPUNET_PREFETCH"), env.get("NUMBA_CACHE_DIR")))
        return (5.0, 6.0) if env.get("NPUNET_PREFETCH") == "1" else (8.0, 7.5)

    monkeypatch.setattr(bench_cold, "_run", fake_run)
    monkeypatch.setattr(bench_cold, "_torch_available", lambda: False)
    monkeypatch.setattr(bench_cold.time, "sleep", lambda s: None)
    lines = []
    runs = bench_cold.bench_cold(rounds=2, out=lines.append)
    assert [c[1] for c in calls] == ["1", "0", "1", "0"]
    assert len({c[2] for c in calls}) == 4  # a fresh cache for every run
    assert all(c[0] == bench_cold.NPUNET_STEP for c in calls)
    assert runs["helper"] == [(5.0, 6.0)] * 2 and not runs["PyTorch"]
    assert any("helper     wall   5.0 s min" in ln for ln in lines), lines
    assert any("no helper  wall   8.0 s min" in ln for ln in lines), lines


def test_one_helper_per_cache(tmp_path):
    """A second helper on a cache whose helper is still working exits at once, compiling nothing."""
    from npunet import jitcache as jc
    if jc.fcntl is None:
        pytest.skip("no file locks here")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NPUNET_PREFETCH_PLAN="classroom")
    with open(tmp_path / ".prefetch.lock", "a") as f:
        jc.fcntl.flock(f, jc.fcntl.LOCK_EX)  # a helper of another run holds the cache
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "npunet.app.prefetch"], env=env, cwd=str(ROOT),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    assert not _cached(tmp_path, prefetch.PLANS["classroom"][-1]), "the second helper compiled"
    assert time.time() - t0 < 30
