"""The EM training recipe as a bench (``npunet bench --recipe em``): a padded U-Net with BatchNorm
(base 16, 1 -> 1 channel), batches of 4 random 256^2 crops with random flips, Adam (lr 1e-3),
BCE with logits, 300 steps, timed from building the model to the last optimiser step: data loading
(cropping, flipping, batching) and the optimiser are part of the wall time.

The data are made here (``npunet.data.make_cells``: 512^2 synthetic cell images, binary masks), once
per process and outside the timing; PyTorch's twin (``npunet.app.torch_twins.em_recipe``) draws the
same crops from the same data with the same code (``batches``).
"""
import time

import numpy as np

DEFAULTS = dict(n_images=8, size=512, batch=4, crop=256, base_channels=16, lr=1e-3, seed=0)


def describe(steps, **kw):
    o = {**DEFAULTS, **kw}
    return (f"EM recipe: padded BN U-Net base {o['base_channels']}, {o['batch']}x{o['crop']}^2 random crops of "
            f"{o['n_images']} synthetic {o['size']}^2 cell images, Adam, BCE, {steps} steps")


def make_data(n_images=8, size=512, seed=0, **_):
    """(images float32 (n, 1, size, size), masks float32 (n, 1, size, size) in {0, 1})."""
    from ..data import make_cells
    x, _, masks = make_cells(n_images, size=size, seed=seed)
    return np.ascontiguousarray(x, np.float32), (masks[:, None] > 0).astype(np.float32)


def batches(images, masks, steps, batch=4, crop=256, seed=0, **_):
    """``steps`` batches (x (batch, C, crop, crop), t (batch, 1, crop, crop)) float32: random images,
    random crop corners, random vertical / horizontal flips."""
    rng = np.random.default_rng(seed)
    n, C, H, W = images.shape
    if crop > min(H, W):
        raise ValueError(f"recipe: crop {crop} is larger than the {H}x{W} images")
    for _ in range(steps):
        idx = rng.integers(0, n, batch)
        ys, xs = rng.integers(0, H - crop + 1, batch), rng.integers(0, W - crop + 1, batch)
        flips = rng.integers(0, 2, (batch, 2)).astype(bool)
        x = np.empty((batch, C, crop, crop), np.float32)
        t = np.empty((batch, 1, crop, crop), np.float32)
        for k in range(batch):
            xi = images[idx[k], :, ys[k]:ys[k] + crop, xs[k]:xs[k] + crop]
            ti = masks[idx[k], :, ys[k]:ys[k] + crop, xs[k]:xs[k] + crop]
            if flips[k, 0]:
                xi, ti = xi[:, ::-1], ti[:, ::-1]
            if flips[k, 1]:
                xi, ti = xi[:, :, ::-1], ti[:, :, ::-1]
            x[k], t[k] = xi, ti
        yield x, t


def run(steps=300, **kw):
    """Train npunet's model on the recipe; dict(wall s, step_median s, loss_first, loss_last)."""
    from .. import models, optim
    from ..backends import step_threads
    from ..losses import BCEWithLogitsLoss
    o = {**DEFAULTS, **kw}
    images, masks = make_data(**o)
    t0 = time.perf_counter()
    m = models.UNet(in_channels=images.shape[1], num_classes=1, base_channels=o["base_channels"], padding="same",
                    batch_norm=True)
    opt = optim.Adam(m.parameters(), lr=o["lr"])
    loss = BCEWithLogitsLoss()
    losses, ts = [], []
    with step_threads():
        for x, t in batches(images, masks, steps, **o):
            s = time.perf_counter()
            y = m(x)
            losses.append(float(loss(y, t)))
            m.zero_grad()
            m.backward(loss.backward())
            opt.step()
            ts.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    return dict(wall=wall, step_median=float(np.median(ts)), loss_first=losses[0], loss_last=float(np.mean(losses[-10:])))
