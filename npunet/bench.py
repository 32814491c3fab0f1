"""Benchmarks, reported against this machine's own float32 GEMM rate.

``npunet bench`` times the U-Net layer set; ``npunet bench --model unet`` times
whole training steps.  Figures are best-of-``repeat`` wall times.
"""
import time

import numpy as np

from . import nn


def _best(f, repeat):
    f()  # warm-up (compilation, page faults)
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


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
        tb = _best(lambda: m.backward(g), repeat)
        flops = 2 * cout * cin * 9 * y.shape[2] * y.shape[3]
        r = dict(layer=label, fwd=tf, bwd=tb, gflops=flops / tf / 1e9, fwd_frac=flops / tf / 1e9 / peak,
                 fb_frac=3 * flops / (tf + tb) / 1e9 / peak)
        rows.append(r)
        out(f"{label:28s} {tf*1e3:8.1f} {tb*1e3:8.1f} {r['gflops']:9.1f} {100*r['fwd_frac']:8.0f}% {100*r['fb_frac']:8.0f}%")
    m = nn.ConvTranspose2d(1024, 512, 2, 2)
    x = rng.standard_normal((1, 1024, 28, 28)).astype(np.float32)
    y = m(x)
    g = np.ones_like(y)
    tf, tb = _best(lambda: m(x), repeat), _best(lambda: m.backward(g), repeat)
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
        tf, tb = _best(lambda: m(x), repeat), _best(lambda: m.backward(g), repeat)
        tc = copy_time(max(x.nbytes, y.nbytes))
        out(f"{label:28s} {tf*1e3:8.1f} {tb*1e3:8.1f} {tc*1e3:8.1f} {tf/tc:9.2f} {tb/tc:9.2f}")
        rows.append(dict(layer=label, fwd=tf, bwd=tb, copy=tc))
    return dict(gemm_gflops=peak, rows=rows)
