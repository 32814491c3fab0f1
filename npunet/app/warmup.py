"""``npunet warmup``: compile every kernel the demo and the lessons use, ahead of time, with a progress bar.

Numba compiles a kernel the first time it runs and keeps the machine code on disk (see
:mod:`npunet.jitcache`), so a first run on a new machine spends its first seconds compiling.  A teacher
runs ``npunet warmup`` once before class; later runs (the demo, the lessons, training) start at full
speed.  Each task below runs a small forward and backward pass through the paths the demo and the
lessons take (the fast backend picks kernels by dtype, stride and size, so the sizes are chosen to
take the same branches)."""
import tempfile
import time

import numpy as np


def _step(m, x):
    """One forward and backward pass of model m on x (every output gets an upstream gradient of ones)."""
    y = m(x)
    m.zero_grad()
    if isinstance(y, (list, tuple)):
        m.backward([np.ones_like(t) for t in y])
    else:
        m.backward(np.ones_like(y))


def _demo():
    from .demo import run_demo
    with tempfile.TemporaryDirectory(prefix="npunet-warmup-") as out:
        run_demo(epochs=1, n_train=8, out=out, progress=False, log=lambda *a, **k: None, trace=False)


def _unet_valid():
    from .. import models
    rng = np.random.default_rng(0)
    m = models.UNet(1, 2, base_channels=8, depth=2)  # the paper's valid convolutions (lessons 2, 3, 7)
    _step(m, rng.standard_normal((1, 1, 188, 188)).astype(np.float32))
    _step(m, rng.standard_normal((2, 1, 92, 92)).astype(np.float32))


def _nested():
    from .. import models
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 64, 64)).astype(np.float32)
    _step(models.UNetPlusPlus(1, 1, filters=(8, 16, 32, 64, 128)), x)                    # lesson 4
    _step(models.UNetPlusPlus(1, 1, filters=(8, 16, 32, 64, 128), deep_supervision=True), x)
    _step(models.UNet3Plus(1, 1, filters=(8, 16, 32, 64, 128), cat_channels=8), x)      # lesson 5


def _encoders():
    from .. import models
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for name in ("resnet34", "mobilenet_v2", "efficientnet-b0"):                         # lesson 8
        _step(models.EncoderUNet(name), x)


def _float64():
    from .. import models, nn
    rng = np.random.default_rng(0)

    def f64(shape):
        return rng.standard_normal(shape)
    # lesson 1's layers and the gradient checks of lessons 1-5 run in float64
    for layer, shape in ((nn.Conv2d(3, 4, 3), (2, 3, 9, 9)), (nn.Conv2d(3, 4, (3, 2), stride=2, padding=1), (2, 3, 9, 8)),
                         (nn.ConvTranspose2d(3, 2, 2, stride=2), (2, 3, 5, 5)), (nn.BatchNorm2d(3), (2, 3, 6, 6)),
                         (nn.MaxPool2d(2), (2, 3, 8, 8))):
        _step(layer.to(np.float64), f64(shape))
    _step(models.UNet(1, 2, base_channels=8, depth=1).to(np.float64), f64((1, 1, 44, 44)))
    _step(models.UNetPlusPlus(1, 1, filters=(2, 3, 4), depth=2).to(np.float64), f64((1, 1, 16, 16)))
    _step(models.UNet3Plus(1, 1, filters=(2, 3, 4, 5, 6), cat_channels=2).to(np.float64), f64((1, 1, 32, 32)))


TASKS = (
    ("the classroom demo (U-Net, BatchNorm, touching cells)", _demo),
    ("U-Net 2015, valid convolutions", _unet_valid),
    ("U-Net++ and UNet 3+", _nested),
    ("encoder U-Nets (ResNet-34, MobileNetV2, EfficientNet-B0)", _encoders),
    ("float64 layers for the gradient checks", _float64),
)


def warmup(progress=True, log=print):
    """Compile (or load from the cache) every kernel the demo and the lessons use; returns the seconds taken."""
    from tqdm.auto import tqdm

    from .. import jitcache
    t0 = time.perf_counter()
    log(f"npunet warmup: compiling npunet's kernels for this machine (cache: {jitcache.cache_root()})")
    bar = tqdm(TASKS, desc="warmup", unit="task", disable=not progress)
    with jitcache.quiet():
        for name, fn in bar:
            bar.set_postfix_str(name)
            fn()
    seconds = time.perf_counter() - t0
    log(f"npunet warmup: done in {seconds:.0f} s; the demo and the lessons now start without compiling")
    return seconds


def main(args=None):
    warmup(progress=not getattr(args, "quiet", False))
