"""The layer gradient checks that ``npunet gradcheck`` runs (float64, tolerance 1e-6), on both backends."""
import numpy as np

from .. import backends, nn
from ..gradcheck import gradcheck


def cases():
    rng = np.random.default_rng(0)
    distinct = (rng.permutation(2 * 3 * 7 * 6) * 0.01).reshape(2, 3, 7, 6)
    yield "Conv2d 3->4 k3 p1", nn.Conv2d(3, 4, 3, padding=1), rng.standard_normal((2, 3, 7, 5))
    yield "Conv2d 2->3 k(3,2) s2 p1", nn.Conv2d(2, 3, (3, 2), 2, 1), rng.standard_normal((2, 2, 8, 9))
    yield "Conv2d depthwise 4 groups", nn.Conv2d(4, 4, 3, groups=4), rng.standard_normal((1, 4, 6, 5))
    yield "ConvTranspose2d 3->2 k2 s2", nn.ConvTranspose2d(3, 2, 2, 2), rng.standard_normal((2, 3, 4, 5))
    yield "ConvTranspose2d 2->3 k3 s2 p1", nn.ConvTranspose2d(2, 3, 3, 2, 1), rng.standard_normal((1, 2, 4, 3))
    yield "MaxPool2d 2", nn.MaxPool2d(2), distinct
    yield "AdaptiveMaxPool2d 1", nn.AdaptiveMaxPool2d(1), distinct
    yield "Upsample bilinear x2 (align_corners=False)", nn.Upsample(scale_factor=2, mode="bilinear",
                                                                    align_corners=False), rng.standard_normal((2, 3, 4, 5))
    yield "Upsample bilinear x2 (align_corners=True)", nn.Upsample(scale_factor=2, mode="bilinear",
                                                                   align_corners=True), rng.standard_normal((2, 3, 4, 5))
    yield "BatchNorm2d (training)", nn.BatchNorm2d(3), rng.standard_normal((2, 3, 4, 5))
    yield "Sigmoid", nn.Sigmoid(), rng.standard_normal((2, 3, 4, 5))
    yield "CropConcat", nn.CropConcat(), (rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((2, 2, 5, 4)))
    yield "Conv2d depthwise k5 s2 p2", nn.Conv2d(3, 3, 5, 2, 2, groups=3), rng.standard_normal((2, 3, 9, 8))
    yield "AdaptiveAvgPool2d 1", nn.AdaptiveAvgPool2d(1), rng.standard_normal((2, 3, 5, 4))
    yield "ZeroPad2d (0, 1, 0, 1)", nn.ZeroPad2d((0, 1, 0, 1)), rng.standard_normal((2, 3, 4, 5))
    yield "SiLU", nn.SiLU(), rng.standard_normal((2, 3, 4, 5))
    yield "ReLU6", nn.ReLU6(), rng.standard_normal((2, 3, 4, 5)) * 4


def run_suite(verbose=True, tol=1e-6):
    ok = True
    for b in backends.NAMES:
        with backends.backend(b):
            for name, m, x in cases():
                r = gradcheck(m.to(np.float64), x)
                ok &= r.ok(tol)
                if verbose:
                    print(f"{'ok  ' if r.ok(tol) else 'FAIL'} {b:9s} {name:45s} max rel. error {r.max_rel_error:.1e} "
                          f"({r.where})")
    return ok
