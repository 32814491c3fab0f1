"""Where Numba caches npunet's kernels, the first-compile line, and ``npunet warmup``."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import npunet

PKG = Path(npunet.__file__).parent
ANNOUNCE = "compiling npunet's kernels for this machine, once: ~"
# One small kernel (the finite scan behind the NaN checks) compiled or loaded from the cache.
PROBE = ("import numpy as np, npunet; from npunet.kernels.util import all_finite; "
         "assert all_finite(np.zeros(1 << 17, np.float32)); print('root=' + str(npunet.jitcache.cache_root()))")


def _copy_package(dst):
    """A copy of the npunet package that cannot be written to: a plain file named __pycache__ in every
    folder stops Python and Numba from creating one there (this works for root too), and the
    folders are made read-only for everyone else."""
    shutil.copytree(PKG, dst / "npunet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    for d, _, _ in os.walk(dst / "npunet"):
        (Path(d) / "__pycache__").write_text("not a folder")
    for d, _, _ in os.walk(dst / "npunet"):
        os.chmod(d, 0o555)


def _unlock(dst):
    for d, _, _ in os.walk(dst / "npunet"):
        os.chmod(d, 0o755)


def _run(code, site, env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(site))


def test_read_only_install_and_unwritable_home_cache_in_a_temp_dir_and_survive_reinstall(tmp_path):
    site, tmp = tmp_path / "site", tmp_path / "tmp"
    site.mkdir()
    tmp.mkdir()
    home = tmp_path / "home"
    home.write_text("a file, so no cache folder can be made under it")
    _copy_package(site)
    env = dict(HOME=str(home), TMPDIR=str(tmp))
    try:
        r = _run(PROBE, site, env)
        assert r.returncode == 0, r.stderr
        lines = r.stderr.strip().splitlines()
        where = [ln for ln in lines if ln.startswith("npunet: caching compiled kernels in ")]
        assert len(where) == 1, r.stderr
        assert str(tmp / "npunet-numba-") in where[0] and str(home) in where[0]  # where it went, and why
        assert sum(ANNOUNCE in ln for ln in lines) == 1, r.stderr
        root = r.stdout.strip().split("root=")[1]
        assert root.startswith(str(tmp / "npunet-numba-"))
        assert list(Path(root).rglob("*.nbi")) and list(Path(root).rglob("*.nbc"))
        written = [p for p in (site / "npunet").rglob("*") if p.suffix in (".nbi", ".nbc", ".pyc")]
        assert written == []  # nothing inside the package
        # a reinstall of the same files (new modification times) finds the compiled kernels: no compile line
        _unlock(site)
        shutil.rmtree(site / "npunet")
        _copy_package(site)
        r2 = _run(PROBE, site, env)
        assert r2.returncode == 0, r2.stderr
        assert ANNOUNCE not in r2.stderr and "compiling" not in r2.stderr, r2.stderr
    finally:
        _unlock(site)


def test_user_cache_dir_is_used_and_the_first_compile_line_is_printed_once(tmp_path):
    xdg = tmp_path / "xdg"
    r = _run(PROBE + "; assert all_finite(np.zeros(1 << 17))", PKG.parent, dict(XDG_CACHE_HOME=str(xdg)))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(ANNOUNCE) == 1 and "caching compiled kernels in" not in r.stderr, r.stderr
    assert r.stdout.strip() == "root=" + str(xdg / "npunet" / "numba")
    again = _run(PROBE, PKG.parent, dict(XDG_CACHE_HOME=str(xdg)))
    assert again.returncode == 0 and "compiling" not in again.stderr, again.stderr
    # NUMBA_CACHE_DIR, Numba's own variable, wins over the per-user folder
    mine = tmp_path / "mine"
    r3 = _run(PROBE, PKG.parent, dict(XDG_CACHE_HOME=str(xdg), NUMBA_CACHE_DIR=str(mine)))
    assert r3.returncode == 0 and r3.stdout.strip() == "root=" + str(mine), r3.stderr
    assert ANNOUNCE in r3.stderr


def test_choose_root_falls_back_in_order(tmp_path):
    from npunet import jitcache
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    ok = tmp_path / "ok"
    root, why = jitcache.choose_root({"NUMBA_CACHE_DIR": str(ok)})
    assert (root, why) == (str(ok), None)
    root, why = jitcache.choose_root({"NUMBA_CACHE_DIR": str(blocked / "x")})
    assert root in (jitcache._user_cache_dir(), jitcache._temp_cache_dir()) and str(blocked / "x") in why


@pytest.mark.slow
def test_warmup_compiles_everything_the_demo_uses(tmp_path):
    """After ``npunet warmup`` in a fresh cache, the demo compiles nothing (counted with Numba's events)."""
    env = dict(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    r = _run("from npunet.cli import main; main(['warmup', '--quiet'])", PKG.parent, env)
    assert r.returncode == 0 and "done in" in r.stdout, r.stderr
    count = ("from numba.core import event\n"
             "n = []\n"
             "class L(event.Listener):\n"
             "    def on_start(self, ev): n.append(ev.data['dispatcher'].py_func.__name__)\n"
             "    def on_end(self, ev): pass\n"
             "event.register('numba:compile', L())\n"
             "from npunet.demo import run_demo\n"
             f"run_demo(epochs=1, out={str(tmp_path / 'demo')!r}, progress=False, log=lambda *a: None)\n"
             "print('compiled', n)\n")
    r = _run(count, PKG.parent, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "compiled []", r.stdout


def test_helper_kernels_compile_once_per_dtype(tmp_path):
    """A helper kernel called from several kernels with a bare constant is typed with the constant's value
    and compiled once per value (seconds of a cold start); the callers pass one type, so it compiles once."""
    code = ("import numpy as np, importlib\n"
            "from npunet.kernels import conv, winograd as W\n"
            "L = importlib.import_module('npunet.kernels.label')\n"
            "for m, f in ((2, W.input_transform_adjoint), (4, W.input_transform_4_adjoint)):\n"
            "    dV = np.ones(((m + 2) ** 2, 1, 2), np.float32)\n"
            "    dx = np.zeros((1, 1, 2 * m, m + 2), np.float32)\n"
            "    f(0, 1, dV, 1, 1, 0, 1, 0, 2, 1, dx)\n"
            "    assert dx.any()\n"
            "L.label(np.ones((3, 3), np.bool_))\n"
            "print(len(conv._store_rows.signatures), len(L._find.signatures))\n")
    r = _run(code, PKG.parent, dict(NUMBA_CACHE_DIR=str(tmp_path / "cache")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"], r.stdout
