"""The prefetch helper: a second process compiles kernels while the first one runs.

Numba compiles a kernel the first time it is called, in the calling thread, holding a process-wide
lock: on an empty cache the classroom demo's first training step compiles about 25 kernels one after
another while the second core idles.  When a run compiles its first kernel, :mod:`npunet.jitcache`
starts ``python -m npunet.app.prefetch`` (once, with 2+ cores; ``NPUNET_PREFETCH=0`` turns it off);
``npunet demo`` and ``npunet warmup`` start it themselves before their first kernel, with the demo's plan.
This helper compiles the kernels of a plan in the *reverse* of the order a run first needs them, into
the same on-disk cache: the run compiles from the front (data kernels, then the forward pass), the
helper from the back (the backward pass).  When the run reaches a kernel the helper has finished, Numba
finds it in the cache and loads it in milliseconds instead of compiling it.  Both meet in the middle
(measured: a cold classroom step 11.9 s -> 7.5 s; less than half, as each compile is slower while both
run); when a kernel is needed while the helper is still compiling it, the run compiles it too (wasted
CPU, same machine code).

A plan lists each kernel with the exact argument types a run passes (float32; recorded from real runs
on empty caches by ``python -m npunet.app.prefetch --record``): ``classroom``, one training step of the
classroom U-Net (also what a first compilation elsewhere starts), and ``demo``, the demo's data, training
and evaluation.  A plan is a list of machine-code requests, not of behaviour: a stale entry only costs
compile time, and a test checks that the plans still cover the classroom step and the demo.  The
helper exits when the plan is done or as soon as the process that started it has ended.
"""
import contextlib
import importlib
import os
import sys

# PLANS[name]: (module, kernel, argument types as Numba writes them) in the order the run first calls
# them; the helper starts from the end (the backward pass).
PLANS = {
    'classroom': [
        ('npunet.kernels.util', '_finite_rows', "(int64, int64, Array(float32, 2, 'C', False, aligned=True), Array(bool, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'pad', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'conv3x3', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_stats', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_apply', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), bool, Array(float32, 3, 'C', False, aligned=True))"),
        ('npunet.kernels.pool', 'maxpool2x2_fwd', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'weight_transform_4', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.conv', '_load_rows', "(Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, Array(float32, 2, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'input_transform_4', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'output_transform_4', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, Array(float32, 1, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd', 'weight_transform', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.winograd', 'input_transform', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.winograd', 'output_transform', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, Array(float32, 1, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.conv', 'upconv_shuffle', "(Array(float32, 2, 'C', False, aligned=True), int64, int64, Array(float32, 1, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_backward', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), bool, Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'weight_grad', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.conv', 'upconv_unshuffle', "(Array(float32, 3, 'C', False, aligned=True), int64, int64, Array(float32, 2, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'output_transform_4_adjoint', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.conv', '_store_rows', "(Array(float32, 2, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'input_transform_4_adjoint', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'weight_transform_4_adjoint', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd', 'output_transform_adjoint', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.winograd', 'input_transform_adjoint', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd', 'weight_transform_adjoint', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.pool', 'maxpool_bwd', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
    ],
    'demo': [
        ('npunet.data.synthetic', '_rasterise', "(int64, int64, Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True))"),
        ('npunet.kernels.label', '_edt_1d', "(Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.label', 'edt_sq', "(Array(bool, 2, 'C', False, aligned=True),)"),
        ('npunet.kernels.label', 'two_nearest', "(Array(int64, 2, 'C', False, aligned=True), int64)"),
        ('npunet.data.augment', '_reflect', '(int64, int64)'),
        ('npunet.data.augment', 'warp_bicubic', "(int64, int64, Array(float64, 3, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True), Array(float64, 3, 'C', False, aligned=True))"),
        ('npunet.data.augment', 'warp_nearest', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True), Array(float64, 2, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True))"),
        ('npunet.kernels.label', '_find', "(Array(int32, 1, 'C', False, aligned=True), int64)"),
        ('npunet.kernels.label', 'label', "(Array(bool, 2, 'C', False, aligned=True), int64)"),
        ('npunet.kernels.util', '_finite_rows', "(int64, int64, Array(float32, 2, 'C', False, aligned=True), Array(bool, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'pad', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'conv3x3', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_stats', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_apply', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), Array(float32, 1, 'C', False, aligned=True), bool, Array(float32, 3, 'C', False, aligned=True))"),
        ('npunet.kernels.pool', 'maxpool2x2_fwd', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'weight_transform_4', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.conv', '_load_rows', "(Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, Array(float32, 2, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'input_transform_4', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'output_transform_4', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, Array(float32, 1, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.conv', 'upconv_shuffle', "(Array(float32, 2, 'C', False, aligned=True), int64, int64, Array(float32, 1, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True))"),
        ('npunet.kernels.norm', 'bn_backward', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), bool, Array(float32, 3, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))"),
        ('npunet.kernels.direct', 'weight_grad', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 3, 'C', False, aligned=True), int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.conv', 'upconv_unshuffle', "(Array(float32, 3, 'C', False, aligned=True), int64, int64, Array(float32, 2, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'output_transform_4_adjoint', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), int64, int64, int64, int64, Array(float32, 3, 'A', False, aligned=True))"),
        ('npunet.kernels.conv', '_store_rows', "(Array(float32, 2, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'input_transform_4_adjoint', "(int64, int64, Array(float32, 3, 'A', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.winograd4', 'weight_transform_4_adjoint', "(int64, int64, Array(float32, 3, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
        ('npunet.kernels.pool', 'maxpool_bwd', "(int64, int64, Array(float32, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True), Array(float32, 4, 'C', False, aligned=True))"),
    ],
}


def _types_namespace():
    from numba.core import types
    ns = {name: getattr(types, name) for name in ("int8", "int16", "int32", "int64", "uint8", "uint16",
                                                    "uint32", "uint64", "float32", "float64", "intp")}
    ns.update(Array=types.Array, UniTuple=types.UniTuple, Tuple=types.Tuple, bool=types.boolean,
              boolean=types.boolean, none=types.none, __builtins__={"True": True, "False": False})
    return ns


def parse_types(text, ns=None):
    """The tuple of Numba types a plan writes as ``repr(args)``, e.g. "(int64, Array(float32, 4, 'C',
    False, aligned=True))"."""
    return eval(text, ns or _types_namespace())  # our own plan strings, evaluated among Numba type names


def start(plan):
    """Start the helper with this plan (a name in PLANS) unless every kernel of it is cached already;
    returns the helper's process, or None."""
    from .. import jitcache
    if all(jitcache.has_index(module, name) for module, name, _ in PLANS[plan]):
        return None
    return jitcache.start_helper(plan)


def run(plan="classroom", parent=None):
    """Compile (or load from the cache) every kernel of PLANS[plan], back to front; stop early when the
    process ``parent`` has ended (this one is then an orphan: its parent pid changes).  Returns the
    number of kernels handled."""
    from .. import jitcache
    ns = _types_namespace()
    done = 0
    with jitcache.quiet():
        for module, name, args in reversed(PLANS[plan]):
            if parent and os.getppid() != parent:
                break
            try:
                getattr(importlib.import_module(module), name).compile(parse_types(args, ns))
            except Exception:  # a stale entry (renamed kernel, changed types): the run compiles it itself
                continue
            done += 1
    return done


def classroom_step():
    """One training step of the classroom U-Net: 8 x 1 x 128^2, BatchNorm U-Net base 16, cross-entropy,
    Adam (the cold-start measurement: ``import npunet`` + this step on an empty cache)."""
    import numpy as np

    from .. import models, optim
    from ..losses import CrossEntropyLoss
    from .bench import MODEL_CASES
    _, cls, cfg, shape, _ = MODEL_CASES["classroom"]
    m = getattr(models, cls)(**cfg)
    opt = optim.Adam(m.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.integers(0, 2, (shape[0],) + shape[2:])
    loss = CrossEntropyLoss()
    y = m(x)
    loss.forward(y, t)
    opt.zero_grad()
    m.backward(loss.backward())
    opt.step()


def short_demo():
    """The demo's code paths at a small size: one epoch on 8 images, nothing printed."""
    import tempfile

    from .demo import run_demo
    with tempfile.TemporaryDirectory(prefix="npunet-short-demo-") as out:
        run_demo(epochs=1, n_train=8, out=out, progress=False, log=lambda *a, **k: None, trace=False)


RUNS = {"classroom": classroom_step, "demo": short_demo}


def compiled_by(run_name):
    """The (module, kernel, argument types) an npunet run compiles, in order of first compilation.  Kernels
    found in the cache are loaded, not compiled, and a helper's would be: call it in a process with an
    empty cache and NPUNET_PREFETCH=0 (as record does)."""
    from numba.core import event
    seen = []

    class Listener(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            f = getattr(ev.data.get("dispatcher"), "py_func", None)
            if f is not None and f.__module__.startswith("npunet."):
                step = (f.__module__, f.__qualname__, repr(tuple(ev.data["args"])))
                if step not in seen:
                    seen.append(step)

    listener = Listener()
    event.register("numba:compile", listener)
    try:
        RUNS[run_name]()
    finally:
        event.unregister("numba:compile", listener)
    return seen


def record(run_name):
    """compiled_by(run_name) in a fresh process on an empty temporary cache, with no helper."""
    import json
    import subprocess
    import tempfile

    from .. import jitcache
    with tempfile.TemporaryDirectory(prefix="npunet-record-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NPUNET_PREFETCH="0")
        code = ("import json, sys; from npunet.app import prefetch; "
                f"json.dump(prefetch.compiled_by({run_name!r}), sys.stdout)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(jitcache.PKG_DIR))
    return [tuple(step) for step in json.loads(out.stdout)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--record"]:  # print PLANS, to paste above after a kernel's arguments changed
        plans = {name: record(name) for name in RUNS}
        train = plans["classroom"]  # the demo's training kernels last, so the helper starts with them
        plans["demo"] = [s for s in plans["demo"] if s not in train] + [s for s in plans["demo"] if s in train]
        print("PLANS = {")
        for name, plan in plans.items():
            print(f"    {name!r}: [")
            for step in plan:
                print(f"        {step!r},")
            print("    ],")
        print("}")
        return 0
    try:
        os.nice(5)  # the run that started us comes first when both want a core
    except (AttributeError, OSError):
        pass
    parent = int(os.environ.get("NPUNET_PREFETCH_PARENT") or 0) or None
    with _only_helper() as alone:
        if alone:  # another run's helper already works on this cache: two would only share the core
            run(os.environ.get("NPUNET_PREFETCH_PLAN") or "classroom", parent=parent)
    return 0


@contextlib.contextmanager
def _only_helper():
    """Yields True in the one helper per cache (a lock file in the cache folder), False in any other:
    processes started side by side on a cold cache (spawned workers, a class of students on one shared
    cache) each start a helper."""
    from .. import jitcache
    root = jitcache.cache_root()
    if root is None or jitcache.fcntl is None:
        yield True
        return
    with jitcache.file_lock(os.path.join(root, ".prefetch.lock"), wait=False) as alone:
        yield alone


if __name__ == "__main__":
    sys.exit(main())
