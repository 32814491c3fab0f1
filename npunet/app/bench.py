"""Benchmarks, reported against this machine's own float32 GEMM rate.

``npunet bench`` times the U-Net layer set; ``npunet bench --model unet`` times
whole training steps.  Figures are best-of-``repeat`` wall times.
"""
import time

import numpy as np

from .. import nn


def _times(f, repeat, setup=None):
    """Wall times of ``repeat`` runs of f() after one warm-up run; setup() runs untimed before each."""
    ts = []
    for i in range(repeat + 1):  # run 0: warm-up (compilation, page faults)
        if setup is not None:
            setup()
        t = time.perf_counter()
        f()
        if i:
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
    """Multiply-add FLOPs (x2) of every conv and up-conv in one forward, from shapes alone."""
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


MODEL_CASES = {  # name: (label, model class, config, input shape, backend)
    "unet572": ("U-Net 2015, valid, 1 -> 2, base 64, batch 1 @ 572^2", "UNet",
                dict(in_channels=1, num_classes=2, base_channels=64), (1, 1, 572, 572), "fast"),
    "classroom": ("U-Net same, BN, base 16, 1 -> 2, batch 8 @ 128^2", "UNet",
                  dict(in_channels=1, num_classes=2, base_channels=16, padding="same", batch_norm=True), (8, 1, 128, 128),
                  "fast"),
    "unet3plus": ("UNet 3+ filters 16..256, cat 16, 1 -> 2, batch 4 @ 128^2", "UNet3Plus",
                  dict(in_channels=1, num_classes=2, filters=(16, 32, 64, 128, 256), cat_channels=16), (4, 1, 128, 128),
                  "fast"),
    "resnet34": ("ResNet-encoder U-Net (resnet34), 3 -> 1, batch 1 @ 256^2", "EncoderUNet",
                 dict(encoder_name="resnet34"), (1, 3, 256, 256), "fast"),
    "mobilenet_v2": ("Mobile U-Net (mobilenet_v2 encoder), 3 -> 1, batch 1 @ 256^2", "EncoderUNet",
                     dict(encoder_name="mobilenet_v2"), (1, 3, 256, 256), "fast"),
    "efficientnet-b0": ("Eff-UNet (efficientnet-b0 encoder), 3 -> 1, batch 1 @ 256^2", "EncoderUNet",
                        dict(encoder_name="efficientnet-b0"), (1, 3, 256, 256), "fast"),
    "reference": ("reference backend: U-Net same, BN, base 8, depth 3, batch 1 @ 64^2", "UNet",
                  dict(in_channels=1, num_classes=2, base_channels=8, depth=3, padding="same", batch_norm=True),
                  (1, 1, 64, 64), "reference"),
}


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
    """The same training step in PyTorch (float32, CPU, same loss), with the twins in ``npunet.app.torch_twins`` (the
    encoder U-Nets through segmentation_models_pytorch); None when they are not importable.  Never a
    dependency."""
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


def _worker(fn, case, repeat):
    """Run npunet.bench.<fn>(case, repeat) in a fresh process (its own peak memory, no shared caches)."""
    import json
    import subprocess
    import sys
    code = f"import json; from npunet.app.bench import {fn}; print(json.dumps({fn}({case!r}, {repeat})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        if fn == "_model_step_worker":
            raise RuntimeError(f"bench: the {case} step failed:\n{res.stderr}")
        return None
    out = res.stdout.strip()
    return json.loads(out.splitlines()[-1]) if out else None


def bench_model(cases=None, repeat=2, rounds=1, out=print):
    """Time float32 training steps (forward + backward, cross-entropy) of the bench's model cases.

    cases: names from MODEL_CASES (None: all).  Each round runs npunet's step and, when PyTorch is
    importable, PyTorch's twin (``npunet.app.torch_twins``) in alternating fresh processes, ``repeat`` timed steps
    each, so that machine drift hits both alike.  Prints min and median step time over all rounds,
    GFLOP/s as % of this machine's GEMM rate, peak resident memory, and the npunet/PyTorch ratios.
    """
    import statistics
    peak = gemm_rate()
    out(f"machine float32 GEMM (2048^3): {peak:.1f} GFLOP/s")
    results = {}
    for case in cases or list(MODEL_CASES):
        label = MODEL_CASES[case][0]
        ours, theirs, r, pt = [], [], None, None
        for _ in range(rounds):
            r = _worker("_model_step_worker", case, repeat)
            ours += r["times"]
            pt = _worker("_torch_step_worker", case, repeat)
            if pt:
                theirs += pt["times"]
        t_min, t_med = min(ours), statistics.median(ours)
        gf = r["flops"] / t_min / 1e9
        line = (f"{label}: step min {t_min:.3f} s, median {t_med:.3f} s ({len(ours)} steps), "
                f"{r['flops'] / 1e9:.1f} GFLOP, {gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of GEMM, "
                f"peak RSS {r['peak_rss'] / 2 ** 30:.2f} GiB")
        torch_row = None
        if theirs:
            p_min, p_med = min(theirs), statistics.median(theirs)
            torch_row = dict(min=p_min, median=p_med, times=theirs, peak_rss=pt["peak_rss"])
            line += (f"\n    PyTorch min {p_min:.3f} s, median {p_med:.3f} s, peak RSS {pt['peak_rss'] / 2 ** 30:.2f} GiB"
                     f" -> npunet/PyTorch {t_min / p_min:.2f} (min), {t_med / p_med:.2f} (median)")
        out(line)
        results[case] = dict(min=t_min, median=t_med, times=ours, flops=r["flops"], gflops=gf, frac=gf / peak,
                             peak_rss=r["peak_rss"], torch=torch_row)
    return dict(gemm_gflops=peak, **results)
