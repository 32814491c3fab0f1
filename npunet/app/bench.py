"""Benchmarks, reported against this machine's own float32 GEMM rate.

``npunet bench`` times the U-Net layer set; ``npunet bench --model unet`` times
whole training steps.  Figures are best-of-``repeat`` wall times.
"""
import time

import numpy as np

from .. import nn


def _times(f, repeat, setup=None, first=True):
    """Wall times of ``repeat`` runs of f() after one warm-up run (none when first=False); setup() runs
    untimed before each."""
    ts = []
    for i in range(repeat + first):  # run 0: warm-up (compilation, page faults)
        if setup is not None:
            setup()
        t = time.perf_counter()
        f()
        if i or not first:
            ts.append(time.perf_counter() - t)
    return ts


def _best(f, repeat, setup=None):
    """Best wall time of f() over ``repeat`` runs after a warm-up; setup() runs untimed before each."""
    return min(_times(f, repeat, setup))


def gemm_rate(n=2048, repeat=3):
    """GFLOP/s of one float32 n x n x n matmul through NumPy's BLAS."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    return 2 * n ** 3 / _best(lambda: a @ b, repeat) / 1e9


def copy_time(nbytes, repeat=3):
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    return _best(lambda: np.copyto(b, a), repeat)


CONV_SET = [  # (label, C_in, C_out, size)
    ("conv3x3 1->64 @572", 1, 64, 572),
    ("conv3x3 64->64 @570", 64, 64, 570),
    ("conv3x3 128->128 @280", 128, 128, 280),
    ("conv3x3 512->1024 @32", 512, 1024, 32),
    ("conv3x3 1024->1024 @30", 1024, 1024, 30),
]


def bench_layers(repeat=3, out=print):
    """Forward/backward times of the U-Net layer set, float32, batch 1."""
    rng = np.random.default_rng(0)
    peak = gemm_rate()
    out(f"machine float32 GEMM (2048^3): {peak:.1f} GFLOP/s")
    out(f"{'layer':28s} {'fwd ms':>8s} {'bwd ms':>8s} {'fwd GF/s':>9s} {'fwd %peak':>9s} {'f+b %peak':>9s}")
    rows = []
    for label, cin, cout, s in CONV_SET:
        m = nn.Conv2d(cin, cout, 3)
        x = rng.standard_normal((1, cin, s, s)).astype(np.float32)
        y = m(x)
        g = np.ones_like(y)
        tf = _best(lambda: m(x), repeat)
        tb = _best(lambda: m.backward(g), repeat, setup=lambda: m(x))
        flops = 2 * cout * cin * 9 * y.shape[2] * y.shape[3]
        r = dict(layer=label, fwd=tf, bwd=tb, gflops=flops / tf / 1e9, fwd_frac=flops / tf / 1e9 / peak,
                 fb_frac=3 * flops / (tf + tb) / 1e9 / peak)
        rows.append(r)
        out(f"{label:28s} {tf*1e3:8.1f} {tb*1e3:8.1f} {r['gflops']:9.1f} {100*r['fwd_frac']:8.0f}% {100*r['fb_frac']:8.0f}%")
    m = nn.ConvTranspose2d(1024, 512, 2, 2)
    x = rng.standard_normal((1, 1024, 28, 28)).astype(np.float32)
    y = m(x)
    g = np.ones_like(y)
    tf, tb = _best(lambda: m(x), repeat), _best(lambda: m.backward(g), repeat, setup=lambda: m(x))
    flops = 2 * 1024 * 512 * 4 * 28 * 28
    out(f"{'upconv2x2 1024->512 @28':28s} {tf*1e3:8.1f} {tb*1e3:8.1f} {flops/tf/1e9:9.1f} "
        f"{100*flops/tf/1e9/peak:8.0f}% {100*3*flops/(tf+tb)/1e9/peak:8.0f}%")
    rows.append(dict(layer="upconv", fwd=tf, bwd=tb, gflops=flops / tf / 1e9))
    out(f"{'memory-bound layer':28s} {'fwd ms':>8s} {'bwd ms':>8s} {'copy ms':>8s} {'fwd/copy':>9s} {'bwd/copy':>9s}")
    for label, m, shape in [("maxpool2x2 64x568^2", nn.MaxPool2d(2), (1, 64, 568, 568)),
                            ("bilinear x2 64x256^2", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             (1, 64, 256, 256)),
                            ("batchnorm 64x568^2", nn.BatchNorm2d(64), (1, 64, 568, 568))]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = m(x)
        g = np.ones_like(y)
        tf, tb = _best(lambda: m(x), repeat), _best(lambda: m.backward(g), repeat, setup=lambda: m(x))
        tc = copy_time(max(x.nbytes, y.nbytes))
        out(f"{label:28s} {tf*1e3:8.1f} {tb*1e3:8.1f} {tc*1e3:8.1f} {tf/tc:9.2f} {tb/tc:9.2f}")
        rows.append(dict(layer=label, fwd=tf, bwd=tb, copy=tc))
    return dict(gemm_gflops=peak, rows=rows)


def conv_flops(model, input_shape):
    """Multiply-add FLOPs (x2) of every conv and up-conv in one forward, from shapes alone, counted as
    direct convolutions: Conv2d 2 * N*C_out*H_out*W_out * (C_in / groups) * kh*kw (a depthwise conv:
    C_in / groups = 1), ConvTranspose2d 2 * N*C_in*H_in*W_in * (C_out / groups) * kh*kw.  A training
    step is 3x this: its backward is two convolutions of the forward's size (dx and dW)."""
    from ..models.summary import trace_shapes
    _, calls = trace_shapes(model, input_shape)
    total = 0
    for m, inputs, out in calls:
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += 2 * int(np.prod(out.shape)) * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            total += 2 * int(np.prod(inputs[0].shape)) * (m.out_channels // m.groups) * kh * kw
    return total


def _encoder_case(name, title, batch):
    return (f"{title} ({name} encoder), 3 -> 1, batch {batch} @ 256^2", "EncoderUNet", dict(encoder_name=name),
            (batch, 3, 256, 256), "fast")


_UNET572 = dict(in_channels=1, num_classes=2, base_channels=64)

MODEL_CASES = {  # name: (label, model class, config, input shape, backend)
    "unet572": ("U-Net 2015, valid, 1 -> 2, base 64, batch 1 @ 572^2", "UNet", _UNET572, (1, 1, 572, 572), "fast"),
    "classroom": ("U-Net same, BN, base 16, 1 -> 2, batch 8 @ 128^2", "UNet",
                  dict(in_channels=1, num_classes=2, base_channels=16, padding="same", batch_norm=True), (8, 1, 128, 128),
                  "fast"),
    "unet3plus": ("UNet 3+ filters 16..256, cat 16, 1 -> 2, batch 4 @ 128^2", "UNet3Plus",
                  dict(in_channels=1, num_classes=2, filters=(16, 32, 64, 128, 256), cat_channels=16), (4, 1, 128, 128),
                  "fast"),
    "resnet34": _encoder_case("resnet34", "ResNet-encoder U-Net", 1),
    "mobilenet_v2": _encoder_case("mobilenet_v2", "Mobile U-Net", 1),
    "efficientnet-b0": _encoder_case("efficientnet-b0", "Eff-UNet", 1),
    "resnet34-b4": _encoder_case("resnet34", "ResNet-encoder U-Net", 4),  # a realistic training batch
    "mobilenet_v2-b4": _encoder_case("mobilenet_v2", "Mobile U-Net", 4),
    "efficientnet-b0-b4": _encoder_case("efficientnet-b0", "Eff-UNet", 4),
    "reference": ("reference backend: U-Net same, BN, base 8, depth 3, batch 1 @ 64^2", "UNet",
                  dict(in_channels=1, num_classes=2, base_channels=8, depth=3, padding="same", batch_norm=True),
                  (1, 1, 64, 64), "reference"),
}

INFERENCE_CASES = {  # name: (label, model class, config, input shape): eval forward under no_grad
    "infer572": ("U-Net 2015 eval forward (no_grad), batch 1 @ 572^2", "UNet", _UNET572, (1, 1, 572, 572)),
}

PREDICT_CASES = {  # name: (label, model class, config, image side): npunet.predict through overlap-tile
    "predict4096": ("npunet.predict, U-Net 2015 overlap-tile (572 tiles) on a 4096^2 image", "UNet", _UNET572, 4096),
}

ALL_CASES = list(MODEL_CASES) + list(INFERENCE_CASES) + list(PREDICT_CASES)

# Memory workers run with glibc's mmap threshold fixed, so every large array is its own mapping and
# returns to the system when freed: the resident peak is then the live arrays', not malloc's reuse.
_MEM_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _status_bytes(key):
    """VmRSS / VmHWM of this process in bytes (Linux /proc), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak():
    """Reset the kernel's peak resident mark (VmHWM) to the current RSS; False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_above(f):
    """(f(), bytes by which f() raised the resident memory above the RSS just before it; None off Linux).
    What f returns stays alive until its peak is read, as the output of a forward does.  Free memory the
    process keeps for reuse (npunet.allocator) is handed back first, or f's arrays would land in it unseen."""
    import gc

    from ..allocator import release
    gc.collect()
    release()
    ok, base = _reset_peak(), _status_bytes("VmRSS")
    r = f()
    hwm = _status_bytes("VmHWM")
    return r, (hwm - base if ok and base is not None and hwm is not None else None)


def _model_step_worker(case, repeat):
    """Runs in a fresh process so that its peak resident memory is the step's own."""
    import resource

    from .. import backend, models
    from ..losses import CrossEntropyLoss
    _, cls, cfg, shape, backend_name = MODEL_CASES[case]
    m = getattr(models, cls)(**cfg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    loss = CrossEntropyLoss()

    def step():
        y = m(x)
        if y.shape[1] == 1:  # one class: BCE-like upstream gradient, as the PyTorch timing
            m.zero_grad()
            m.backward(np.ones_like(y))
            return
        t = rng.integers(0, 2, (y.shape[0],) + y.shape[2:])
        loss.forward(y, t)
        m.zero_grad()
        m.backward(loss.backward())

    from ..backends import step_threads
    with backend(backend_name), step_threads():
        ts = _times(step, repeat)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(times=ts, flops=3 * conv_flops(m, shape), peak_rss=rss)


def _torch_step_worker(case, repeat):
    """The same training step in PyTorch (float32, CPU, same loss), with the twins in
    ``npunet.app.torch_twins`` (the encoder U-Nets through segmentation_models_pytorch); None when they
    are not importable.  Never a dependency."""
    import resource
    _, cls, cfg, shape, backend_name = MODEL_CASES[case]
    if backend_name != "fast":
        return None
    try:
        import torch

        from . import torch_twins
        m = torch_twins.build(cls, cfg).train()
    except ImportError:
        return None
    x = torch.randn(shape)
    g = torch.Generator().manual_seed(0)

    def step():
        m.zero_grad()
        y = m(x)
        if y.shape[1] == 1:
            y.backward(torch.ones_like(y))
        else:
            t = torch.randint(0, 2, (y.shape[0],) + y.shape[2:], generator=g)
            torch.nn.functional.cross_entropy(y, t).backward()

    for _ in range(3):  # oneDNN builds its kernels over the first few calls
        step()
    ts = _times(step, repeat)
    return dict(times=ts, peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _spec(table, case):
    """A case's entry: its name in ``table``, or the entry itself (a list, as JSON carries it)."""
    return table[case] if isinstance(case, str) else case


def _infer_worker(case, repeat, what):
    """npunet's eval forward of an INFERENCE_CASES case.  what: "time" (``repeat`` timed no_grad
    forwards), "eval" (bytes a no_grad eval forward raises the resident peak by, after one warm-up) or
    "train" (the same for a training-mode forward, which keeps every layer's cache for backward)."""
    from .. import models, no_grad
    _, cls, cfg, shape = _spec(INFERENCE_CASES, case)
    m = getattr(models, cls)(**cfg)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if what == "train":
        m.train()
        y = m(x)
        m.backward(np.ones_like(y))  # uses up the warm-up's caches
        del y
        return dict(bytes=peak_above(lambda: m(x))[1])
    m.eval()
    with no_grad():
        if what == "eval":
            m(x)
            return dict(bytes=peak_above(lambda: m(x))[1])
        return dict(times=_times(lambda: m(x), repeat), flops=conv_flops(m, shape))


def _torch_infer_worker(case, repeat, what):
    """PyTorch's twin of ``_infer_worker``: eval forward under ``torch.inference_mode()`` ("time",
    "eval") or a training forward that keeps its graph ("train"); None without PyTorch."""
    _, cls, cfg, shape = _spec(INFERENCE_CASES, case)
    try:
        import torch

        from . import torch_twins
        m = torch_twins.build(cls, cfg)
    except ImportError:
        return None
    x = torch.randn(shape)
    if what == "train":
        m.train()
        m(x).sum().backward()
        return dict(bytes=peak_above(lambda: m(x))[1])
    m.eval()
    with torch.inference_mode():
        for _ in range(2):  # oneDNN builds its kernels over the first calls
            m(x)
        if what == "eval":
            return dict(bytes=peak_above(lambda: m(x))[1])
        return dict(times=_times(lambda: m(x), repeat))


def _predict_worker(case, repeat, side=None):
    """Seconds of ``npunet.predict`` (overlap-tile, logits -> class mask) on a random side^2 image, after a
    one-tile warm-up; and its resident peak above the RSS before the first timed call."""
    from .. import models, predict
    _, cls, cfg, s = _spec(PREDICT_CASES, case)
    s = side or s
    m = getattr(models, cls)(**cfg)
    img = np.random.default_rng(0).random((cfg.get("in_channels", 1), s, s), np.float32)
    predict(m, img[:, :388, :388])
    t = time.perf_counter()
    mask, peak = peak_above(lambda: predict(m, img))
    ts = [time.perf_counter() - t] + _times(lambda: predict(m, img), repeat - 1, first=False)
    return dict(times=ts, bytes=peak, pixels=s * s, shape=list(mask.shape))


def _torch_predict_worker(case, repeat, side=None):
    """The same tiling loop with PyTorch's forward (``torch_twins.predict_overlap_tile``); None without it."""
    _, cls, cfg, s = _spec(PREDICT_CASES, case)
    s = side or s
    try:
        import torch

        from . import torch_twins
        m = torch_twins.build(cls, cfg).eval()
    except ImportError:
        return None
    img = np.random.default_rng(0).random((cfg.get("in_channels", 1), s, s), np.float32)
    with torch.inference_mode():
        torch_twins.predict_overlap_tile(m, img[:, :388, :388], depth=cfg.get("depth", 4))
    def run():
        return torch_twins.predict_overlap_tile(m, img, depth=cfg.get("depth", 4))

    t = time.perf_counter()
    mask, peak = peak_above(run)
    ts = [time.perf_counter() - t] + _times(run, repeat - 1, first=False)
    return dict(times=ts, bytes=peak, pixels=s * s, shape=list(mask.shape))


def _worker(fn, *args, env=None):
    """npunet.app.bench.<fn>(*args) in a fresh process (its own peak memory, no shared caches); its JSON
    result.  A PyTorch worker that fails gives None (with its last error line printed)."""
    import json
    import os
    import subprocess
    import sys
    code = (f"import json, sys; from npunet.app.bench import {fn}; "
            f"print(json.dumps({fn}(*json.loads(sys.argv[1]))))")
    res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        if not fn.startswith("_torch"):
            raise RuntimeError(f"bench: {fn}{args} failed:\n{res.stderr}")
        err = res.stderr.strip().splitlines()
        print(f"bench: PyTorch's {fn}{args} failed: {err[-1] if err else res.returncode}")
        return None
    out = res.stdout.strip()
    return json.loads(out.splitlines()[-1]) if out else None


def _gib(b):
    return "n/a" if b is None else f"{b / 2 ** 30:.2f} GiB"


def _ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def _step_row(case, repeat, rounds, peak, out):
    import statistics
    label = MODEL_CASES[case][0]
    ours, theirs, r, pt = [], [], None, None
    for _ in range(rounds):
        r = _worker("_model_step_worker", case, repeat)
        ours += r["times"]
        pt = _worker("_torch_step_worker", case, repeat) or pt
        if pt:
            theirs += pt["times"]
    t_min, t_med = min(ours), statistics.median(ours)
    gf = r["flops"] / t_min / 1e9
    line = (f"{label}: step min {t_min:.3f} s, median {t_med:.3f} s ({len(ours)} steps), "
            f"{r['flops'] / 1e9:.1f} GFLOP (3x the forward's convs), {gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of GEMM, "
            f"peak RSS {_gib(r['peak_rss'])}")
    torch_row = None
    if theirs:
        p_min, p_med = min(theirs), statistics.median(theirs)
        torch_row = dict(min=p_min, median=p_med, times=theirs, peak_rss=pt["peak_rss"],
                         frac=r["flops"] / p_min / 1e9 / peak)
        line += (f"\n    PyTorch min {p_min:.3f} s, median {p_med:.3f} s, {100 * torch_row['frac']:.0f}% of GEMM, "
                 f"peak RSS {_gib(pt['peak_rss'])} -> npunet/PyTorch time {t_min / p_min:.2f} (min), "
                 f"{t_med / p_med:.2f} (median), peak memory {_ratio(r['peak_rss'], pt['peak_rss'])}")
    out(line)
    return dict(min=t_min, median=t_med, times=ours, flops=r["flops"], gflops=gf, frac=gf / peak,
                peak_rss=r["peak_rss"], torch=torch_row)


def _inference_row(case, repeat, rounds, peak, out):
    import statistics
    label = _spec(INFERENCE_CASES, case)[0]
    ours, theirs, r = [], [], None
    for _ in range(rounds):
        r = _worker("_infer_worker", case, repeat, "time")
        ours += r["times"]
        pt = _worker("_torch_infer_worker", case, repeat, "time")
        theirs += pt["times"] if pt else []
    mem = {w: (_worker("_infer_worker", case, 0, w, env=_MEM_ENV) or {}).get("bytes") for w in ("eval", "train")}
    tmem = {w: (_worker("_torch_infer_worker", case, 0, w, env=_MEM_ENV) or {}).get("bytes") for w in ("eval", "train")}
    t_min, t_med = min(ours), statistics.median(ours)
    gf = r["flops"] / t_min / 1e9
    line = (f"{label}: forward min {t_min:.3f} s, median {t_med:.3f} s ({len(ours)} forwards), "
            f"{r['flops'] / 1e9:.1f} GFLOP, {100 * gf / peak:.0f}% of GEMM; memory above the resting process: "
            f"eval no_grad {_gib(mem['eval'])}, training forward {_gib(mem['train'])} "
            f"-> eval/training {_ratio(mem['eval'], mem['train'])}")
    torch_row = None
    if theirs:
        p_min, p_med = min(theirs), statistics.median(theirs)
        torch_row = dict(min=p_min, median=p_med, times=theirs, eval_bytes=tmem["eval"], train_bytes=tmem["train"],
                         frac=r["flops"] / p_min / 1e9 / peak)
        line += (f"\n    PyTorch inference_mode min {p_min:.3f} s, median {p_med:.3f} s, "
                 f"{100 * torch_row['frac']:.0f}% of GEMM; memory eval {_gib(tmem['eval'])}, training forward "
                 f"{_gib(tmem['train'])} -> npunet/PyTorch time {t_min / p_min:.2f} (min), {t_med / p_med:.2f} (median),"
                 f" eval memory {_ratio(mem['eval'], tmem['eval'])}")
    out(line)
    return dict(min=t_min, median=t_med, times=ours, flops=r["flops"], frac=gf / peak, eval_bytes=mem["eval"],
                train_bytes=mem["train"], torch=torch_row)


def _predict_row(case, repeat, rounds, peak, out, side=None):
    label = _spec(PREDICT_CASES, case)[0]
    ours, theirs, r, pt = [], [], None, None
    for _ in range(rounds):
        r = _worker("_predict_worker", case, repeat, side)
        ours += r["times"]
        pt = _worker("_torch_predict_worker", case, repeat, side) or pt
        theirs += pt["times"] if pt else []
    t_min = min(ours)
    px = r["pixels"]
    line = (f"{label}: min {t_min:.2f} s ({len(ours)} runs) = {px / t_min / 1e6:.3f} Mpixel/s, "
            f"peak above rest {_gib(r['bytes'])}")
    torch_row = None
    if theirs:
        p_min = min(theirs)
        torch_row = dict(min=p_min, times=theirs, bytes=pt["bytes"])
        line += (f"\n    PyTorch, same tiling: min {p_min:.2f} s = {px / p_min / 1e6:.3f} Mpixel/s, peak above rest "
                 f"{_gib(pt['bytes'])} -> npunet/PyTorch throughput {p_min / t_min:.2f}, memory "
                 f"{_ratio(r['bytes'], pt['bytes'])}")
    out(line)
    return dict(min=t_min, times=ours, pixels=px, bytes=r["bytes"], torch=torch_row)


def bench_model(cases=None, repeat=2, rounds=1, out=print):
    """Time the bench's model cases in fresh processes, npunet's and (when PyTorch is importable)
    PyTorch's twin (``npunet.app.torch_twins``) alternating ``rounds`` times, so that machine drift hits
    both alike.

    cases: names from ALL_CASES (None: all).  MODEL_CASES: float32 training steps (forward + backward,
    cross-entropy), min and median step time, % of this machine's GEMM rate (FLOPs: 3x ``conv_flops``
    of the forward, the same count for PyTorch), peak resident memory, npunet/PyTorch ratios.
    INFERENCE_CASES: eval forward under ``no_grad`` (PyTorch: ``inference_mode``), and the memory it
    raises the process by, next to a training forward's.  PREDICT_CASES: ``npunet.predict`` through
    overlap-tile against the same tiling loop with PyTorch's forward (``repeat`` whole images after a
    one-tile warm-up; the first also measures memory).  Returns dict(gemm_gflops, case: row).
    """
    for case in cases or ():
        if case not in ALL_CASES:
            raise ValueError(f"npunet bench: no case {case!r}; the cases are {', '.join(ALL_CASES)}")
    peak = gemm_rate()
    out(f"machine float32 GEMM (2048^3): {peak:.1f} GFLOP/s")
    results = {}
    for case in cases or ALL_CASES:
        if case in MODEL_CASES:
            results[case] = _step_row(case, repeat, rounds, peak, out)
        elif case in INFERENCE_CASES:
            results[case] = _inference_row(case, repeat, rounds, peak, out)
        elif case in PREDICT_CASES:
            results[case] = _predict_row(case, max(repeat, 1), rounds, peak, out)
    return dict(gemm_gflops=peak, **results)


def bench_recipe(name="em", steps=300, rounds=1, out=print, **kw):
    """Wall time of a whole training recipe (``npunet.app.recipe_em``: data loading, forward, backward,
    optimiser) in npunet and in PyTorch, alternating fresh processes ``rounds`` times."""
    if name != "em":
        raise ValueError(f"npunet bench: no recipe {name!r}; the recipes are: em")
    ours, theirs, r, pt = [], [], None, None
    for _ in range(rounds):
        r = _worker("_recipe_worker", "npunet", steps, kw)
        ours.append(r["wall"])
        pt = _worker("_recipe_worker_torch", steps, kw) or pt
        if pt:
            theirs.append(pt["wall"])
    from .recipe_em import describe
    line = (f"{describe(steps, **kw)}: npunet wall {min(ours):.1f} s (min of {len(ours)}; "
            f"{1e3 * r['step_median']:.0f} ms/step median, loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})")
    if theirs:
        line += (f"\n    PyTorch wall {min(theirs):.1f} s ({1e3 * pt['step_median']:.0f} ms/step median, loss "
                 f"{pt['loss_first']:.3f} -> {pt['loss_last']:.3f}) -> npunet/PyTorch {min(ours) / min(theirs):.2f} (min)")
    out(line)
    return dict(wall=ours, torch=theirs or None, npunet_run=r, torch_run=pt)


def _recipe_worker(lib, steps, kw):
    from . import recipe_em
    return recipe_em.run(steps, **kw)


def _recipe_worker_torch(steps, kw):
    try:
        import torch  # noqa: F401

        from . import torch_twins
    except ImportError:
        return None
    return torch_twins.em_recipe(steps, **kw)
