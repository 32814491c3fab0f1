"""npunet.allocator: freed large arrays are reused (no fresh page faults), the opt-outs leave glibc alone,
and release() hands the kept memory back."""
import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc on Linux only")

_PROBE = r"""
import json, resource
import numpy as np
import npunet
from npunet import allocator

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

a = np.ones(64 * 2 ** 20 // 8)          # 64 MiB, touched: over glibc's 32 MiB mmap limit
del a
f0 = faults()
b = np.ones(64 * 2 ** 20 // 8)          # the same size again
refault = faults() - f0
del b
before = rss()
released = allocator.release()
print(json.dumps(dict(state=allocator.state, refault=refault, freed_mib=(before - rss()) / 2 ** 20,
                      released=released)))
"""


def _probe(**env):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "NPUNET_MALLOC", "GLIBC_TUNABLES"))}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=e, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_freed_large_array_is_reused_without_page_faults_and_release_hands_it_back():
    kept = _probe()
    assert kept["state"] == "kept"
    assert kept["refault"] < 8                    # the second 64 MiB came from the kept pages
    assert kept["released"] and kept["freed_mib"] > 32


def test_opting_out_leaves_glibc_alone_and_its_fresh_pages_fault_again():
    system = _probe(NPUNET_MALLOC="system")
    assert system["state"].startswith("left to the system allocator")
    assert system["refault"] >= 32                # 64 MiB mmap'd afresh: a fault per 4 KiB page, or per 2 MiB huge
    #                                               page where the kernel gives them (measured 544 here)
    for env in (dict(MALLOC_TRIM_THRESHOLD_="131072"), dict(MALLOC_PERTURB_="0"),
                dict(GLIBC_TUNABLES="glibc.malloc.mmap_max=0")):
        assert _probe(**env)["state"] == "left alone: a glibc MALLOC_* setting is in the environment", env
    assert _probe(GLIBC_TUNABLES="glibc.pthread.rseq=0")["state"] == "kept"     # not a malloc tunable


def test_a_bad_npunet_malloc_value_gets_one_line_and_the_default():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    e["NPUNET_MALLOC"] = "sistem"
    out = subprocess.run([sys.executable, "-c", "import npunet, npunet.allocator as a; print(a.state)"],
                         capture_output=True, text=True, env=e, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "kept"
    lines = [l for l in out.stderr.splitlines() if "NPUNET_MALLOC" in l]
    assert lines == ["npunet: NPUNET_MALLOC must be 'keep' or 'system', got 'sistem'; keeping freed memory "
                     "(the default)"]
