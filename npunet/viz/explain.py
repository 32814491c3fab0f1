"""The U-Net Explainer: one self-contained HTML page that walks through a real model's forward and
backward pass, after CNN Explainer (Wang et al., IEEE VIS 2020), for the whole U-Net family.

``explain(model, image, path)`` runs the model once on ``image`` with every leaf call recorded
(the trace npunet.summary and npunet.viz.architecture use, here with real arrays), runs the loss and
``model.backward`` with every leaf's incoming and outgoing gradient recorded, and writes a page
generated from that graph: the blocks are the model's own children (``block_graph``), the overview
is ``draw_architecture`` as SVG, every number shown is the model's float32 value.  No network, no
library: the page's JavaScript is below, images are base64 PNGs, exact numbers base64 float32.
"""
import base64
import html
import io
import json
import math

import numpy as np

from .. import nn
from ..nn import module as _module

# Display limits: a block's feature grid holds at most this many pixels (channels x tile^2); larger
# maps are block-averaged for display, the page states the true shape.
GRID_PIXELS = 160_000
MAX_TILE = 128
SNAP_PIXELS = 20_000      # per block and training snapshot
OP_FLOATS = 30_000        # floats of an operation's input window region
OP_KERNEL_FLOATS = 20_000  # floats of a conv's embedded kernels (output channels beyond are left out)


# ------------------------------------------------------------------ encoding helpers

def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def _f32(a):
    """base64 of little-endian float32 values (decoded by the page into a Float32Array)."""
    return _b64(np.ascontiguousarray(a, dtype="<f4").tobytes())


def _png(rgb):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


_WHITE = 255   # palette index of the grid's separators


def _levels(a, lo, hi):
    """Values -> palette indices 0..254 on [lo, hi] (display only; the numbers shown are exact)."""
    t = (np.asarray(a, np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(np.shape(a)) + 0.5
    return np.rint(np.clip(t, 0, 1) * 254).astype(np.uint8)


def _png_indexed(idx, cmap):
    """A palette PNG: one byte a pixel, the colour map as its palette (a third of an RGB PNG)."""
    import matplotlib
    from PIL import Image
    pal = matplotlib.colormaps[cmap](np.linspace(0, 1, 255), bytes=True)[:, :3]
    pal = np.concatenate([pal, [[255, 255, 255]]]).astype(np.uint8)
    img = Image.fromarray(idx).convert("P")
    img.putpalette(pal.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


def _shrink(a, tile):
    """(C, H, W) -> (C, h, w) with max(h, w) <= tile by block averaging (whole factors)."""
    C, H, W = a.shape
    f = max(1, math.ceil(max(H, W) / tile))
    if f == 1:
        return a, 1
    h, w = H // f, W // f
    if h == 0 or w == 0:
        return a[:, ::f, ::f], f
    return a[:, :h * f, :w * f].reshape(C, h, f, w, f).mean(axis=(2, 4)), f


def _grid(a, cmap, symmetric=False, pixels=GRID_PIXELS, max_channels=None):
    """A feature grid: every channel of a (C, H, W) map as one tile, one colour scale for all.
    Returns dict(png, lo, hi, cols, rows, tile_h, tile_w, shown, channels, factor, cmap)."""
    a = np.asarray(a, np.float64)
    C, H, W = a.shape
    shown = C if max_channels is None else min(C, max_channels)
    tile = int(max(4, min(MAX_TILE, math.sqrt(pixels / shown))))
    small, f = _shrink(a[:shown], tile)
    if symmetric:
        m = float(np.abs(a).max()) or 1.0
        lo, hi = -m, m
    else:
        lo, hi = float(a.min()), float(a.max())
    cols = int(math.ceil(math.sqrt(shown * small.shape[1] / small.shape[2])))
    cols = max(1, min(shown, cols))
    rows = int(math.ceil(shown / cols))
    th, tw = small.shape[1], small.shape[2]
    canvas = np.full((rows * (th + 1) - 1, cols * (tw + 1) - 1), _WHITE, np.uint8)
    idx = _levels(small, lo, hi)
    for c in range(shown):
        r, q = divmod(c, cols)
        canvas[r * (th + 1):r * (th + 1) + th, q * (tw + 1):q * (tw + 1) + tw] = idx[c]
    return dict(png=_png_indexed(canvas, cmap), lo=lo, hi=hi, cols=cols, rows=rows, tile_h=th, tile_w=tw, shown=shown,
                channels=C, factor=f, cmap=cmap)


def _map(a, cmap, lo=None, hi=None, tile=256):
    """One 2-D map as a coloured PNG (block-averaged to <= tile pixels a side)."""
    a = np.asarray(a, np.float64)
    small, f = _shrink(a[None], tile)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    return dict(png=_png_indexed(_levels(small[0], lo, hi), cmap), cmap=cmap, lo=lo, hi=hi, factor=f, shape=list(a.shape))


def _cnorm(g):
    """Per-pixel gradient norm over channels: (C, H, W) -> (H, W)."""
    return np.sqrt((np.asarray(g, np.float64) ** 2).sum(axis=0))


# ------------------------------------------------------------------ recording the model

class _Recorder:
    """Records every leaf call of a forward (module, inputs, output, with real arrays) and, during the
    backward, each leaf's incoming gradient and the gradients it returns for its inputs."""

    def __init__(self, model):
        self.model = model
        self.calls = []
        self.grad_out = {}
        self.grad_in = {}

    def forward(self, x):
        old = _module._mode.trace
        _module._mode.trace = []
        try:
            out = self.model(x)
            self.calls = list(_module._mode.trace)
        finally:
            _module._mode.trace = old
        return out

    def backward(self, d, keep_out=None, keep_in=None):
        """model.backward(d), keeping the incoming gradient of the calls in keep_out and the outgoing
        ones of the calls in keep_in (None: all; the others are dropped as soon as used: memory)."""
        index = {}
        for i, (m, _, _) in enumerate(self.calls):
            index.setdefault(id(m), []).append(i)
        hooked = []
        for key, idx in index.items():
            m = self.calls[idx[0]][0]
            if len(idx) != 1:      # a layer called twice: its backward order is ambiguous; not recorded
                continue
            i = idx[0]
            orig = m.backward

            def hook(g, _orig=orig, _i=i):
                if keep_out is None or _i in keep_out:
                    self.grad_out[_i] = g
                r = _orig(g)
                if keep_in is None or _i in keep_in:
                    self.grad_in[_i] = r if isinstance(r, tuple) else (r,)
                return r
            object.__setattr__(m, "backward", hook)
            hooked.append(m)
        try:
            return self.model.backward(d)
        finally:
            for m in hooked:
                del m.__dict__["backward"]


def _set_structure(model, training):
    """Containers (the model's forward logic: deep-supervision heads) in training mode, the leaves
    (BatchNorm statistics, dropout) in eval: the training graph with the inference numbers."""
    for m in model.modules():
        object.__setattr__(m, "training", training if not m._leaf else False)


def _heads(out):
    if isinstance(out, tuple):
        out = out[0]
    return list(out) if isinstance(out, list) else [out]


def _center_crop(a, H, W):
    h, w = a.shape[-2:]
    t, l = (h - H) // 2, (w - W) // 2
    return a[..., t:t + H, l:l + W]


def _loss_and_grad(model, out, mask, weight):
    """The training loss of ``out`` (the heads in training structure) against ``mask``; returns
    (value, the gradient to feed model.backward, dL/dlogits of the first head)."""
    from .. import losses
    heads = _heads(out)
    H, W = heads[0].shape[-2:]
    m = _center_crop(mask, H, W)
    w = None if weight is None else _center_crop(weight, H, W)[None].astype(heads[0].dtype)
    C = heads[0].shape[1]
    if C == 1:
        base, target = losses.BCEWithLogitsLoss(), m[None, None].astype(heads[0].dtype)
    else:
        base, target = losses.CrossEntropyLoss(), m[None].astype(np.int64)
    ds = losses.DeepSupervisionLoss(base)
    value = ds.forward(heads, target, w)
    grads = ds.backward()
    plain = out[0] if isinstance(out, tuple) else out
    d = grads if isinstance(plain, list) else grads[0]
    if isinstance(out, tuple):      # UNet 3+'s classification-guided module: no classification loss here
        d = (d, np.zeros_like(out[1]))
    return float(value), d, grads[0]


def _probability(model, out):
    """Foreground probability (H, W) of the eval output (logits, or UNet 3+'s gated probabilities)."""
    z = np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float64)[0]
    if getattr(model, "cgm", False):
        return z[-1]
    if z.shape[0] == 1:
        return 1 / (1 + np.exp(-z[0]))
    e = np.exp(z - z.max(axis=0))
    return 1 - (e[0] / e.sum(axis=0))


# ------------------------------------------------------------------ the graph of blocks

def _block_depth(model):
    return 3 if type(model).__name__ == "EncoderUNet" else 1


def _child(model, dotted):
    for part in dotted.split("."):
        model = getattr(model, part) if not part.isdigit() else model[int(part)]
    return model


def _rf_step(m, inputs, rf):
    """Receptive field (size, jump) of a leaf's output from its inputs' (Dilated convs: none in npunet.)"""
    r = [rf.get(id(x), (1, 1)) for x in inputs if isinstance(x, np.ndarray)]
    size = max(s for s, _ in r) if r else 1
    jump = min(j for _, j in r) if r else 1
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        k, s = m.kernel_size[0], m.stride[0]
        return size + (k - 1) * jump, jump * s
    if isinstance(m, nn.ConvTranspose2d):
        j = jump / m.stride[0]
        return size + max(0, m.kernel_size[0] - m.stride[0]) * j, j
    if isinstance(m, nn.Upsample):
        f = float(m.scale_factor[0]) if m.scale_factor else 2.0
        return size + (jump if m.mode == "bilinear" else 0), jump / f
    if type(m).__name__.startswith("Adaptive"):
        return float("inf"), jump
    return size, jump


class _Graph:
    def __init__(self, model, rec, x):
        names = {id(m): n for n, m in model.named_modules()}
        depth = _block_depth(model)
        self.calls = rec.calls
        self.leaf_names = [names[id(m)] for m, _, _ in self.calls]
        self.block_of = [".".join(n.split(".")[:depth]) for n in self.leaf_names]
        self.order = []
        for b in self.block_of:
            if b not in self.order:
                self.order.append(b)
        self.producer = {id(x): -1}
        self.consumers = {}
        self.arrays = {id(x): x}
        rf = {id(x): (1, 1)}
        self.rf = {}
        for i, (m, inputs, out) in enumerate(self.calls):
            for pos, a in enumerate(inputs):
                if isinstance(a, np.ndarray):
                    self.consumers.setdefault(id(a), []).append((i, pos))
                    self.arrays.setdefault(id(a), a)
            rf[id(out)] = _rf_step(m, inputs, rf)
            self.producer[id(out)] = i
            self.arrays[id(out)] = out
        self.rf_of = rf
        self.last_call = {}
        for i, b in enumerate(self.block_of):
            self.last_call[b] = i

    def block_output(self, b):
        return self.calls[self.last_call[b]][2]

    def block_inputs(self, b):
        """[(array, producer block or 'input')] read by block b from outside it, in order."""
        seen, res = set(), []
        for i, blk in enumerate(self.block_of):
            if blk != b:
                continue
            for a in self.calls[i][1]:
                if not isinstance(a, np.ndarray) or id(a) in seen:
                    continue
                p = self.producer.get(id(a))
                src = "input" if p == -1 else self.block_of[p] if p is not None else None
                if src is not None and src != b:
                    seen.add(id(a))
                    res.append((a, src))
        return res

    def block_consumers(self, b):
        """[(consumer call index, input position, consumer block)] of b's output outside b."""
        out = self.block_output(b)
        return [(i, pos, self.block_of[i]) for i, pos in self.consumers.get(id(out), []) if self.block_of[i] != b]


# ------------------------------------------------------------------ one-operation views

def _pick_point(grad_map, H, W):
    """The output pixel an operation view starts at: where the gradient reaching it is largest
    (a cell border, usually), or the centre."""
    if grad_map is None:
        return H // 2, W // 2
    g = _cnorm(grad_map)
    y, x = np.unravel_index(int(np.argmax(g)), g.shape)
    return int(y), int(x)


def _region(c, R, n):
    lo = int(min(max(c - R // 2, 0), max(n - R, 0)))
    return lo, min(R, n)


def _op_view(m, name, inputs, out, grad):
    """The numbers of one operation around one output pixel, or None for other layers."""
    x = np.asarray(inputs[0])[0]
    y = np.asarray(out)[0]
    Co, Ho, Wo = y.shape
    cy, cx = _pick_point(None if grad is None else grad[0], Ho, Wo)
    if isinstance(m, nn.Conv2d) and m.groups == 1 and m.stride == (1, 1):
        k, p = m.kernel_size[0], m.padding[0]
        Ci = x.shape[0]
        R = int(max(1, min(8, math.sqrt(OP_FLOATS / Ci) - (k - 1))))
        oy, ry = _region(cy, R, Ho)
        ox, rx = _region(cx, R, Wo)
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        win = xp[:, oy:oy + ry + k - 1, ox:ox + rx + k - 1]
        nco = int(max(1, min(Co, OP_KERNEL_FLOATS // (Ci * k * k))))
        w = m.weight.data[:nco]
        b = m.bias.data[:nco] if m.bias is not None else np.zeros(nco, w.dtype)
        return dict(kind="conv", layer=name, k=k, pad=p, cin=Ci, cout=Co, cout_shown=nco, oy=oy, ox=ox, ry=ry,
                    rx=rx, start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape),
                    window=_f32(win), kernel=_f32(w), bias=_f32(b), out=_f32(y[:nco, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.MaxPool2d) and m.padding == (0, 0):
        k, s = m.kernel_size[0], m.stride[0]
        C = min(x.shape[0], 8)
        oy, ry = _region(cy, 8, Ho)
        ox, rx = _region(cx, 8, Wo)
        win = x[:C, oy * s:(oy + ry - 1) * s + k, ox * s:(ox + rx - 1) * s + k]
        return dict(kind="maxpool", layer=name, k=k, s=s, cin=x.shape[0], c_shown=C, oy=oy, ox=ox, ry=ry, rx=rx,
                    start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape), window=_f32(win),
                    wh=list(win.shape[1:]), out=_f32(y[:C, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.ConvTranspose2d) and m.groups == 1 and m.kernel_size == m.stride and m.padding == (0, 0):
        k = m.kernel_size[0]
        Ci = x.shape[0]
        R = 2 * int(max(1, min(4, math.sqrt(OP_FLOATS / Ci) // 1)))
        oy, ry = _region(cy - cy % k, R, Ho)
        ox, rx = _region(cx - cx % k, R, Wo)
        oy, ox = oy - oy % k, ox - ox % k
        win = x[:, oy // k:(oy + ry + k - 1) // k, ox // k:(ox + rx + k - 1) // k]
        nco = int(max(1, min(Co, OP_KERNEL_FLOATS // (Ci * k * k))))
        w = m.weight.data[:, :nco]
        b = m.bias.data[:nco] if m.bias is not None else np.zeros(nco, w.dtype)
        return dict(kind="upconv", layer=name, k=k, cin=Ci, cout=Co, cout_shown=nco, oy=oy, ox=ox, ry=ry, rx=rx,
                    start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape), wh=list(win.shape[1:]),
                    window=_f32(win), kernel=_f32(w), bias=_f32(b), out=_f32(y[:nco, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.Upsample) and m.mode == "bilinear":
        C = min(x.shape[0], 8)
        Hi, Wi = x.shape[1:]
        oy, ry = _region(cy, 8, Ho)
        ox, rx = _region(cx, 8, Wo)

        def src(o, n_in, n_out):   # PyTorch's source coordinate of output index o
            if m.align_corners:
                s = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            else:
                s = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = min(int(math.floor(s)), n_in - 1)
            return i0, min(i0 + 1, n_in - 1), s - i0
        ys = [src(o, Hi, Ho) for o in range(oy, oy + ry)]
        xs = [src(o, Wi, Wo) for o in range(ox, ox + rx)]
        y0, y1 = ys[0][0], max(t[1] for t in ys)
        x0, x1 = xs[0][0], max(t[1] for t in xs)
        win = x[:C, y0:y1 + 1, x0:x1 + 1]
        return dict(kind="bilinear", layer=name, align_corners=bool(m.align_corners), cin=x.shape[0], c_shown=C,
                    oy=oy, ox=ox, ry=ry, rx=rx, start=[cy - oy, cx - ox], in_shape=list(x.shape),
                    out_shape=list(y.shape), wy0=y0, wx0=x0, wh=list(win.shape[1:]), window=_f32(win),
                    ys=[[a - y0, b - y0, float(t)] for a, b, t in ys], xs=[[a - x0, b - x0, float(t)] for a, b, t in xs],
                    out=_f32(y[:C, oy:oy + ry, ox:ox + rx]))
    return None


# ------------------------------------------------------------------ the data behind the page

def _as_input(model, image):
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"npunet.viz.explain: image must be (H, W), (C, H, W) or (1, C, H, W), got shape {np.shape(image)}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"npunet.viz.explain: image holds {x.dtype} values; expected a numeric array")
    return np.ascontiguousarray(x, dtype=model.dtype or np.float32)


def explainer_data(model, image, mask=None, labels=None, weight_map=True, snapshots=None, title=None, note=None):
    """Everything the page shows, as a JSON-able dict (``explain`` writes it into the page).

    image: (H, W), (C, H, W) or (1, C, H, W); mask: (H, W) ground truth (0/1, or class indices);
    labels: (H, W) instance labels (0 background) for the U-Net weight map (Ronneberger et al. 2015,
    eq. 2) and, without a mask, the mask labels > 0.  Without either the loss uses the model's own
    thresholded prediction as its target (the page says so).
    snapshots: [(label, state_dict)] of the same model during training, for the training slider.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        return _explainer_data(model, image, mask, labels, weight_map, snapshots, title, note)
    finally:
        for m, t in modes:    # the model's own train/eval modes back
            object.__setattr__(m, "training", t)


def _explainer_data(model, image, mask, labels, weight_map, snapshots, title, note):
    from ..data import weight_map as make_weight_map
    from .architecture import draw_architecture
    x = _as_input(model, image)
    model.eval()
    out_eval = model(x)
    prob = _probability(model, out_eval)
    target_note = ""
    if mask is None and labels is not None:
        mask = (np.asarray(labels) > 0).astype(np.int64)
    if mask is None:
        mask = (prob > 0.5).astype(np.int64)
        mask = np.pad(mask, [((x.shape[2] - mask.shape[0]) // 2,) * 2, ((x.shape[3] - mask.shape[1]) // 2,) * 2])
        target_note = ("No ground truth was given: the loss uses the model's own thresholded prediction as its target, "
                       "so the gradients show what would make the model more sure of what it already predicts.")
    mask = np.asarray(mask).astype(np.int64)
    if mask.shape != x.shape[2:]:
        raise ValueError(f"npunet.viz.explain: mask has shape {mask.shape}, the image is {x.shape[2:]}")
    wmap = None
    if labels is not None and weight_map:
        wmap = make_weight_map(np.asarray(labels), mask=(mask > 0)).astype(np.float64)

    # the recorded forward and backward: without the weight map (the toggle), then with it.  Only the
    # last pass is kept whole; of the first, the per-pixel gradient norms of each block (memory).
    passes = {}
    for key, w in (("plain", None), ("wm", wmap)) if wmap is not None else (("plain", None),):
        _set_structure(model, True)
        rec = _Recorder(model)
        out = rec.forward(x)
        value, d, dlogits = _loss_and_grad(model, out, mask, w)
        model.zero_grad()
        g = _Graph(model, rec, x)
        keep_out = set(g.last_call.values()) | {i for i, (m, _, _) in enumerate(rec.calls)
                                                 if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d, nn.Upsample))}
        keep_in = {i for i, (_, ins, _) in enumerate(rec.calls)      # calls that read a map from another block
                   if any(isinstance(a, np.ndarray) and g.producer.get(id(a)) is not None
                          and (g.producer[id(a)] == -1 or g.block_of[g.producer[id(a)]] != g.block_of[i]) for a in ins)}
        rec.backward(d, keep_out, keep_in)
        norms = {b: _cnorm(np.asarray(rec.grad_out[i])[0]) for b, i in g.last_call.items() if i in rec.grad_out}
        passes[key] = (norms, value, dlogits)
        del out, d
    model.zero_grad()
    loss_value, dlogits = passes[key][1], passes[key][2]

    blocks = []
    level_of = {}
    H0 = x.shape[2]
    for b in g.order:
        last = g.last_call[b]
        y = g.block_output(b)
        yb = np.asarray(y)[0]
        child = _child(model, b)
        size, jump = g.rf_of[id(y)]
        lvl = math.log2(H0 / y.shape[2]) if y.shape[2] else 0
        level_of[b] = lvl
        leaves = [dict(name=g.leaf_names[i], cls=type(g.calls[i][0]).__name__, shape=list(g.calls[i][2].shape))
                  for i in range(len(g.calls)) if g.block_of[i] == b]
        info = dict(name=b, cls=type(child).__name__, params=int(child.num_parameters()),
                    in_shapes=[list(a.shape) for a, _ in g.block_inputs(b)], in_from=[s for _, s in g.block_inputs(b)],
                    out_shape=list(y.shape), rf=None if not math.isfinite(size) else round(size, 2),
                    jump=jump, level=lvl, leaves=leaves, features=_grid(yb, "viridis"))
        # copy and crop: a concatenation of a map from outside (the skip) with one made in the block
        for i in range(len(g.calls)):
            m, ins, o = g.calls[i]
            if g.block_of[i] == b and isinstance(m, (nn.CropConcat, nn.Concat)) and len(ins) == 2:
                skip, up = np.asarray(ins[0])[0], np.asarray(ins[1])[0]
                H, W = up.shape[1:]
                t, l = (skip.shape[1] - H) // 2, (skip.shape[2] - W) // 2
                info["crop"] = dict(layer=g.leaf_names[i], skip_shape=list(ins[0].shape), up_shape=list(ins[1].shape),
                                    skip_from=g.block_of[g.producer.get(id(ins[0]), -1)]
                                    if g.producer.get(id(ins[0]), -1) >= 0 else "input",
                                    top=t, left=l, h=H, w=W, skip=_map(skip[0], "viridis"), up=_map(up[0], "viridis"))
                break
        # one operation of each kind in the block: the first of each
        ops, kinds = [], set()
        for i in range(len(g.calls)):
            if g.block_of[i] != b:
                continue
            m, ins, o = g.calls[i]
            v = _op_view(m, g.leaf_names[i], ins, o, rec.grad_out.get(i))
            if v is not None and (v["kind"], tuple(v["in_shape"]), tuple(v["out_shape"])) not in kinds:
                kinds.add((v["kind"], tuple(v["in_shape"]), tuple(v["out_shape"])))
                ops.append(v)
        info["ops"] = ops
        # backward: the gradient reaching the block's output, and where it came from
        gy = rec.grad_out.get(last)
        if gy is not None:
            gy0 = np.asarray(gy)[0]
            info["grad"] = _grid(gy0, "RdBu_r", symmetric=True)
            info["grad_norm"] = float(np.sqrt((np.asarray(gy, np.float64) ** 2).sum()))
            norms = {key: p[0].get(b) for key, p in passes.items()}
            hi = max(float(n.max()) for n in norms.values() if n is not None) or 1.0
            info["grad_map"] = {k: _map(n, "magma", 0.0, hi) for k, n in norms.items() if n is not None}
            info["grad_norms"] = {k: float(np.sqrt((n ** 2).sum())) for k, n in norms.items() if n is not None}
            contribs = []
            for ci, pos, cb in g.block_consumers(b):
                gi = rec.grad_in.get(ci)
                if gi is None or pos >= len(gi) or gi[pos] is None:
                    continue
                part = np.asarray(gi[pos])[0]
                contribs.append(dict(via=g.leaf_names[ci], block=cb, norm=float(np.sqrt((part.astype(np.float64) ** 2).sum())),
                                     part=part))
            if len(contribs) > 1:
                total = sum(c["part"].astype(np.float64) for c in contribs)
                hi = max(float(_cnorm(c["part"]).max()) for c in contribs) or 1.0
                for c in contribs:
                    c["map"] = _map(_cnorm(c.pop("part")), "magma", 0.0, hi)
                info["contributions"] = contribs
                info["contrib_sum_error"] = float(np.abs(total - gy0).max())
                info["contrib_sum_map"] = _map(_cnorm(total), "magma", 0.0, float(_cnorm(total).max()) or 1.0)
            # the gradients this block sends back to each of its inputs (UNet 3+'s five branches)
            sent = []
            for a, src in g.block_inputs(b):
                tot = None
                for ci, pos in g.consumers.get(id(a), []):
                    if g.block_of[ci] == b and ci in rec.grad_in and pos < len(rec.grad_in[ci]) \
                            and rec.grad_in[ci][pos] is not None:
                        part = np.asarray(rec.grad_in[ci][pos], np.float64)
                        tot = part if tot is None else tot + part
                if tot is not None:
                    sent.append(dict(to=src, shape=list(a.shape), norm=float(np.sqrt((tot ** 2).sum())), cn=_cnorm(tot[0])))
            if len(sent) > 1:
                hi = max(float(s_["cn"].max()) for s_ in sent) or 1.0
                for s_ in sent:
                    s_["map"] = _map(s_.pop("cn"), "magma", 0.0, hi)
                info["sent"] = sent
            else:
                for s_ in sent:
                    s_.pop("cn")
        blocks.append(info)

    # overview figure: the model's own architecture drawing, as SVG with clickable boxes
    import matplotlib
    import matplotlib.pyplot as plt
    # text as SVG text (small, selectable); set and restored by hand: rc_context would also restore
    # the backend and so lose a notebook's inline figures
    keys = {"svg.fonttype": "none", "svg.hashsalt": "npunet"}
    old = {k: matplotlib.rcParams[k] for k in keys}
    try:
        matplotlib.rcParams.update(keys)
        fig = draw_architecture(model, x.shape, depth=_block_depth(model))
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
    finally:
        matplotlib.rcParams.update(old)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    a, b = svg.find("<metadata>"), svg.find("</metadata>")
    if a >= 0 and b > a:      # matplotlib's RDF block: a date and links, nothing to show
        svg = svg[:a] + svg[b + len("</metadata>"):]

    img = np.asarray(x[0], np.float64)
    H, W = prob.shape
    gt = _center_crop(mask, H, W)
    pred = (prob > 0.5).astype(np.int64)
    gt_fg = (gt > 0).astype(np.int64)
    err = np.full((H, W, 3), 255, np.uint8)
    err[(pred == 1) & (gt_fg == 1)] = (200, 200, 200)
    err[(pred == 1) & (gt_fg == 0)] = (214, 39, 40)
    err[(pred == 0) & (gt_fg == 1)] = (31, 119, 180)
    dl = np.asarray(dlogits, np.float64)[0]
    images = dict(input=_map(img.mean(axis=0), "gray"), prob=_map(prob, "viridis", 0.0, 1.0),
                  truth=_map(gt_fg, "gray", 0.0, 1.0), error=dict(png=_png(err), shape=[H, W]),
                  out_shape=[H, W], in_shape=list(x.shape))
    out_grad = {}
    for key, (_, _, dlk) in passes.items():
        out_grad[key] = _cnorm(np.asarray(dlk, np.float64)[0])
    hi = max(float(v.max()) for v in out_grad.values()) or 1.0
    images["dlogits"] = {k: _map(v, "magma", 0.0, hi) for k, v in out_grad.items()}
    if wmap is not None:
        images["weight"] = _map(_center_crop(wmap, H, W), "magma")

    levels = {}
    for bl in blocks:
        if "grad_norms" in bl:
            levels.setdefault(bl["level"], []).append([bl["name"], bl["grad_norms"]])

    data = dict(title=title or f"{type(model).__name__}: {model.num_parameters():,} parameters",
                model=type(model).__name__, params=int(model.num_parameters()), note=note or "", target_note=target_note,
                loss=loss_value, loss_name=("cross-entropy" if model.num_classes > 1 else "BCE with logits")
                + (" with the U-Net weight map" if wmap is not None else ""),
                loss_values={k: v[1] for k, v in passes.items()}, has_wm=wmap is not None, svg=svg, blocks=blocks,
                images=images, levels={str(k): v for k, v in sorted(levels.items())},
                error_counts=dict(fp=int(((pred == 1) & (gt_fg == 0)).sum()), fn=int(((pred == 0) & (gt_fg == 1)).sum()),
                                  tp=int(((pred == 1) & (gt_fg == 1)).sum())),
                dlogits_sum_check=float(np.abs(dl).sum()))
    if snapshots:
        data["snapshots"] = _snapshots(model, x, snapshots, [bl["name"] for bl in blocks])
    return data


def _snapshots(model, x, snapshots, block_names):
    """[label, prediction PNG, {block: small feature grid}] for each state_dict, then the final
    weights are put back."""
    final = model.state_dict()
    res = []
    try:
        for label, sd in snapshots:
            model.load_state_dict(sd)
            model.eval()
            out = model(x)
            prob = _probability(model, out)
            _set_structure(model, True)
            rec = _Recorder(model)
            rec.forward(x)
            g = _Graph(model, rec, x)
            feats = {b: _grid(np.asarray(g.block_output(b))[0], "viridis", pixels=SNAP_PIXELS, max_channels=16)
                     for b in block_names if b in g.last_call}
            res.append(dict(label=str(label), prob=_map(prob, "viridis", 0.0, 1.0), features=feats))
    finally:
        model.load_state_dict(final)
    return res


def explain(model, image, path, mask=None, labels=None, weight_map=True, snapshots=None, title=None, note=None):
    """Write the U-Net Explainer page for ``model`` on ``image`` to ``path`` (one self-contained HTML
    file, opens offline in any browser).  Arguments as :func:`explainer_data`.  Returns
    dict(path, bytes, blocks) (bytes: the file's size)."""
    data = explainer_data(model, image, mask=mask, labels=labels, weight_map=weight_map, snapshots=snapshots,
                          title=title, note=note)
    page = render(data)
    tmp = str(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    import os
    os.replace(tmp, path)
    return dict(path=str(path), bytes=len(page.encode("utf-8")), blocks=[b["name"] for b in data["blocks"]])


def render(data):
    """The page for an explainer_data dict."""
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(data["title"]))
            .replace("__DATA__", blob).replace("__JS__", _JS).replace("__CSS__", _CSS))


_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:8px 16px}header h1{font-size:18px;margin:0}
header p{margin:2px 0;font-size:13px;opacity:.9}
nav{display:flex;gap:4px;padding:6px 16px;background:#e8ecf3;position:sticky;top:0;z-index:2}
nav button{border:1px solid #99a;background:#fff;padding:4px 12px;cursor:pointer;border-radius:3px}
nav button.on{background:#23395d;color:#fff}
main{display:flex}#side{width:190px;padding:8px;font-size:12px;max-height:calc(100vh - 110px);overflow:auto}
#side button{display:block;width:100%;text-align:left;border:0;background:none;padding:2px 4px;cursor:pointer}
#side button.on{background:#ffe08a}section{flex:1;padding:8px 16px;display:none}section.on{display:block}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.fig{font-size:12px;text-align:left}
.fig img{image-rendering:pixelated;border:1px solid #ccc;display:block;margin:auto}
#svgbox svg{max-width:100%;height:auto}#svgbox svg *{pointer-events:none}
#svgbox [id^="blk-"],#svgbox [id^="blk-"] *{cursor:pointer;pointer-events:all}
#svgbox [id^="blk-"]:hover path{stroke:#f0a;stroke-width:3}#svgbox .sel path{stroke:#f0a!important;stroke-width:4!important}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}
.scale{display:inline-block;width:160px;height:10px;vertical-align:middle;border:1px solid #999}
.mono{font-family:ui-monospace,monospace}.box{position:relative;display:inline-block}
.crop{position:absolute;border:2px dashed #f0a;pointer-events:none}.pick td{cursor:pointer}
.pick td.on{outline:3px solid #f0a}.hl{background:#ffe08a}.note{font-size:12px;color:#555;max-width:900px}
.bar{background:#4a78b5;height:10px;display:inline-block}
"""

_TEMPLATE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>U-Net Explainer: __TITLE__</title>
<style>__CSS__</style></head><body>
<header><h1>U-Net Explainer &mdash; __TITLE__</h1><p id="subtitle"></p></header>
<nav><button data-view="overview" class="on">Overview</button><button data-view="block">Block</button>
<button data-view="op">One operation</button><button data-view="backward">Backward</button>
<button data-view="training" id="nav-training">Training</button></nav>
<main><div id="side"><b>Blocks</b><div id="blocklist"></div></div>
<section id="overview" class="on"></section><section id="block"></section><section id="op"></section>
<section id="backward"></section><section id="training"></section></main>
<script type="application/json" id="data">__DATA__</script>
<script>__JS__</script></body></html>
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const f32 = (b64) => { const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new Float32Array(u.buffer); };
const shp = (s) => "(" + s.join(", ") + ")";
const num = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(4) : v.toFixed(6);
const CMAPS = {viridis: "#440154,#3b528b,#21918c,#5ec962,#fde725", RdBu_r: "#053061,#4393c3,#f7f7f7,#d6604d,#67001f",
  magma: "#000004,#51127c,#b73779,#fc8961,#fcfdbf", gray: "#000,#fff"};
function scale(m, label) {
  return `<span class="mono">${num(m.lo)}</span> <span class="scale" style="background:linear-gradient(to right,${CMAPS[m.cmap || "viridis"]})"></span>
  <span class="mono">${num(m.hi)}</span> ${label || ""}`;
}
function fig(m, caption, w, extra) {
  return `<div class="fig"><img src="${m.png}" ${w ? `width="${w}"` : ""} ${extra || ""} alt="${esc(caption)}"><div>${caption}</div></div>`;
}
let cur = D.blocks[0].name, curOp = 0, wm = D.has_wm;
const byName = {}; D.blocks.forEach((b) => byName[b.name] = b);
const level = (b) => b.level;

function show(view) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("on", b.dataset.view === view));
  document.querySelectorAll("main section").forEach((s) => s.classList.toggle("on", s.id === view));
  render(view);
}
function select(name, view) {
  cur = name; curOp = 0;
  document.querySelectorAll("#blocklist button").forEach((b) => b.classList.toggle("on", b.dataset.block === name));
  document.querySelectorAll('#svgbox [id^="blk-"]').forEach((g) => g.classList.toggle("sel", g.id === "blk-" + name));
  show(view || "block");
}
function current() { return document.querySelector("nav button.on").dataset.view; }

function renderOverview() {
  const I = D.images, e = D.error_counts;
  let h = `<p class="note">${esc(D.note)} Click any box of the figure (or a name on the left) to open that block.
  The figure is drawn from the model itself: boxes are blocks with parameters (width ~ channels, height ~ resolution),
  arrows are the parameter-free steps (pooling, up-sampling, concatenation).</p><div id="svgbox">${D.svg}</div>
  <div class="row">${fig(I.input, "input " + shp(I.in_shape), 192)}${fig(I.prob, "prediction: foreground probability " + shp(I.out_shape), 192)}
  ${fig(I.truth, "ground truth (centre " + shp(I.out_shape) + ")", 192)}
  ${fig(I.error, `error map: <span style="color:#d62728">false positive ${e.fp}</span>, <span style="color:#1f77b4">false negative ${e.fn}</span>, grey: true positive ${e.tp}`, 192)}</div>
  <p class="note">${esc(D.target_note)}</p>`;
  $("overview").innerHTML = h;
  document.querySelectorAll('#svgbox [id^="blk-"]').forEach((g) => {
    const name = g.id.slice(4);
    if (byName[name]) { g.addEventListener("click", () => select(name, "block")); g.classList.toggle("sel", name === cur); }
  });
}

function grid(m, title, id) {
  return `<div class="fig"><img id="${id}" data-block="${esc(cur)}" src="${m.png}" style="max-width:900px;width:${Math.min(900, Math.max(420, m.cols * (m.tile_w + 1)))}px" alt="${esc(title)}">
  <div>${title}: ${m.shown} of ${m.channels} channels${m.factor > 1 ? `, shown ${m.factor}x smaller (block averages)` : ""}; ${scale(m)}</div></div>`;
}

function renderBlock() {
  const b = byName[cur];
  const ins = b.in_shapes.map((s, i) => `${shp(s)} from ${esc(b.in_from[i])}`).join("<br>");
  const chain = [b.in_shapes.length ? b.in_shapes[0][2] : ""].concat(b.leaves.map((l) => l.shape[2]))
    .filter((v, i, a) => i === 0 || v !== a[i - 1]).join(" &rarr; ");
  let h = `<h2>${esc(b.name)} <small>(${esc(b.cls)})</small></h2>
  <table><tr><th>input</th><td>${ins || "&ndash;"}</td></tr><tr><th>output</th><td>${shp(b.out_shape)}</td></tr>
  <tr><th>sizes</th><td>${chain}</td></tr><tr><th>parameters</th><td id="block-params">${b.params.toLocaleString()}</td></tr>
  <tr><th>receptive field</th><td>${b.rf === null ? "the whole image" : b.rf + " x " + b.rf + " input pixels"} (one output pixel = ${b.jump} input pixels)</td></tr>
  <tr><th>layers</th><td style="text-align:left">${b.leaves.map((l) => esc(l.name.split(".").slice(-1)[0] + " " + l.cls + " " + shp(l.shape))).join("<br>")}</td></tr></table>
  <h3>Feature maps of ${esc(b.name)}'s output</h3>${grid(b.features, "every channel", "feature-grid")}`;
  if (b.crop) {
    const c = b.crop, sw = 220, k = sw / c.skip_shape[3];
    h += `<h3>Copy and ${c.skip_shape[2] === c.h ? "concatenate" : "crop"} (${esc(c.layer)})</h3><div class="row">
    <div class="fig"><div class="box"><img src="${c.skip.png}" width="${sw}"><div class="crop" id="crop-rect" style="left:${c.left * k}px;top:${c.top * k}px;width:${c.w * k - 4}px;height:${c.h * k - 4}px"></div></div>
    <div>skip from ${esc(c.skip_from)} ${shp(c.skip_shape)}, channel 0;<br>the dashed box is what is kept (${c.h}x${c.w} from ${c.skip_shape[2]}x${c.skip_shape[3]})</div></div>
    ${fig(c.up, "up-sampled " + shp(c.up_shape) + ", channel 0", Math.round(c.w * k))}</div>
    <p class="note">The two are stacked along the channels: ${c.skip_shape[1]} + ${c.up_shape[1]} channels.</p>`;
  }
  if (b.ops.length) h += `<p><button id="to-op">See one operation of this block &rarr;</button></p>`;
  $("block").innerHTML = h;
  if (b.ops.length) $("to-op").onclick = () => show("op");
}

function pickTable(o, onpick) {
  let h = `<table class="pick" id="pick">`;
  for (let i = 0; i < o.ry; i++) { h += "<tr>";
    for (let j = 0; j < o.rx; j++) h += `<td data-i="${i}" data-j="${j}" title="output (${o.oy + i}, ${o.ox + j})">${o.oy + i},${o.ox + j}</td>`;
    h += "</tr>"; }
  return h + "</table>";
}

function renderOp() {
  const b = byName[cur];
  if (!b.ops.length) { $("op").innerHTML = `<p>${esc(b.name)} has no convolution, pooling or up-sampling of its own; choose another block on the left.</p>`; return; }
  const o = b.ops[Math.min(curOp, b.ops.length - 1)];
  let h = `<h2>One operation of ${esc(b.name)}</h2><p>${b.ops.map((p, i) => `<button class="opbtn${i === curOp ? " hl" : ""}" data-i="${i}">${esc(p.kind)}: ${esc(p.layer)}</button>`).join(" ")}</p>
  <p class="note">Input ${shp(o.in_shape)} &rarr; output ${shp(o.out_shape)}. Pick an output pixel (the region around the largest gradient) and a channel.</p>
  <div class="row"><div>${pickTable(o)}</div><div id="opdetail"></div></div>`;
  $("op").innerHTML = h;
  document.querySelectorAll(".opbtn").forEach((x) => x.onclick = () => { curOp = +x.dataset.i; renderOp(); });
  const st = {i: o.start[0], j: o.start[1], co: 0, ci: -1};
  const W = f32(o.window), K = o.kernel ? f32(o.kernel) : null, B = o.bias ? f32(o.bias) : null, O = f32(o.out);
  function draw() {
    document.querySelectorAll("#pick td").forEach((t) => t.classList.toggle("on", +t.dataset.i === st.i && +t.dataset.j === st.j));
    $("opdetail").innerHTML = OPS[o.kind](o, st, W, K, B, O);
    const sel = $("chan-out"); if (sel) sel.onchange = () => { st.co = +sel.value; draw(); };
    const sci = $("chan-in"); if (sci) sci.onchange = () => { st.ci = +sci.value; draw(); };
  }
  document.querySelectorAll("#pick td").forEach((t) => t.onclick = () => { st.i = +t.dataset.i; st.j = +t.dataset.j; draw(); });
  draw();
}
function mat(rows, cls) {
  return `<table class="mono ${cls || ""}">` + rows.map((r) => "<tr>" + r.map((v) => `<td${v[1] ? ' class="hl"' : ""}>${typeof v[0] === "number" ? num(v[0]) : v[0]}</td>`).join("") + "</tr>").join("") + "</table>";
}
function chanSelect(id, n, v, label) {
  let h = `${label} <select id="${id}">`;
  for (let c = 0; c < n; c++) h += `<option value="${c}"${c === v ? " selected" : ""}>${c}</option>`;
  return h + "</select>";
}
const OPS = {
  conv(o, st, W, K, B, O) {
    const k = o.k, Ci = o.cin, wh = o.ry + k - 1, ww = o.rx + k - 1;
    let sum = 0; const part = [];
    for (let c = 0; c < Ci; c++) { let s = 0;
      for (let u = 0; u < k; u++) for (let v = 0; v < k; v++)
        s += W[(c * wh + st.i + u) * ww + st.j + v] * K[((st.co * Ci + c) * k + u) * k + v];
      part.push(s); sum += s; }
    const total = sum + B[st.co], out = O[(st.co * o.ry + st.i) * o.rx + st.j];
    let ci = st.ci; if (ci < 0) { ci = 0; part.forEach((p, c) => { if (Math.abs(p) > Math.abs(part[ci])) ci = c; }); }
    const win = [], ker = [], prod = [];
    for (let u = 0; u < k; u++) { const a = [], b = [], p = [];
      for (let v = 0; v < k; v++) { const x = W[(ci * wh + st.i + u) * ww + st.j + v], w = K[((st.co * Ci + ci) * k + u) * k + v];
        a.push([x]); b.push([w]); p.push([x * w]); }
      win.push(a); ker.push(b); prod.push(p); }
    const top = part.map((p, c) => [c, p]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 8);
    return `<h3>${k}x${k} convolution ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3>
    <p>${chanSelect("chan-out", o.cout_shown, st.co, "output channel")} ${o.cout_shown < o.cout ? `(first ${o.cout_shown} of ${o.cout})` : ""}
    ${chanSelect("chan-in", Ci, ci, "input channel shown")}</p>
    <div class="row"><div>input window (channel ${ci})${o.pad ? ", zero padding " + o.pad : ""}${mat(win)}</div><div>kernel [${st.co}, ${ci}]${mat(ker)}</div>
    <div>products${mat(prod)} sum over this channel: <span class="mono">${num(part[ci])}</span></div></div>
    <p>The output sums such products over all ${Ci} input channels (${Ci * k * k} multiplications), then adds the bias.
    Largest channel contributions: ${top.map((t) => `ch ${t[0]}: <span class="mono">${num(t[1])}</span>`).join(", ")}</p>
    <table class="mono"><tr><th>sum of all products</th><td>${sum.toPrecision(9)}</td></tr><tr><th>+ bias</th><td>${B[st.co].toPrecision(9)}</td></tr>
    <tr><th>= sum</th><td id="op-sum">${total.toPrecision(9)}</td></tr><tr><th>the model's output (float32)</th><td id="op-output">${out.toPrecision(9)}</td></tr>
    <tr><th>difference</th><td>${Math.abs(total - out).toExponential(2)}</td></tr></table>
    <p class="note">This is the convolution's own output, before the batch norm and ReLU that follow it in the block.</p>`;
  },
  maxpool(o, st, W, K, B, O) {
    const k = o.k, s = o.s, c = Math.min(Math.max(st.co, 0), o.c_shown - 1), [wh, ww] = o.wh;
    let best = -Infinity, bu = 0, bv = 0; const rows = [];
    for (let u = 0; u < k; u++) for (let v = 0; v < k; v++) {
      const x = W[(c * wh + st.i * s + u) * ww + st.j * s + v]; if (x > best) { best = x; bu = u; bv = v; } }
    for (let u = 0; u < k; u++) { const r = []; for (let v = 0; v < k; v++) r.push([W[(c * wh + st.i * s + u) * ww + st.j * s + v], u === bu && v === bv]); rows.push(r); }
    const out = O[(c * o.ry + st.i) * o.rx + st.j];
    return `<h3>${k}x${k} max pooling ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", o.c_shown, c, "channel")}</p>
    <div class="row"><div>input window: rows ${(o.oy + st.i) * s}&ndash;${(o.oy + st.i) * s + k - 1}, columns ${(o.ox + st.j) * s}&ndash;${(o.ox + st.j) * s + k - 1}${mat(rows)}</div></div>
    <p>The winner (highlighted): input (${(o.oy + st.i) * s + bu}, ${(o.ox + st.j) * s + bv}); in backward only it receives the gradient.</p>
    <table class="mono"><tr><th>max of the window</th><td id="op-sum">${best.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
  upconv(o, st, W, K, B, O) {
    const k = o.k, Ci = o.cin, Co = o.cout, [wh, ww] = o.wh, iy = Math.floor((o.oy + st.i) / k) - o.oy / k, ix = Math.floor((o.ox + st.j) / k) - o.ox / k;
    const ty = (o.oy + st.i) % k, tx = (o.ox + st.j) % k, co = st.co, ncs = o.cout_shown;
    let sum = 0; const part = [];
    for (let c = 0; c < Ci; c++) { const p = W[(c * wh + iy) * ww + ix] * K[((c * ncs + co) * k + ty) * k + tx]; part.push(p); sum += p; }
    const total = sum + B[co], out = O[(co * o.ry + st.i) * o.rx + st.j];
    const land = []; for (let u = 0; u < k; u++) { const r = []; for (let v = 0; v < k; v++) r.push([`(${(o.oy / k + iy) * k + u}, ${(o.ox / k + ix) * k + v})`, u === ty && v === tx]); land.push(r); }
    const top = part.map((p, c) => [c, p]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 8);
    return `<h3>${k}x${k} up-convolution ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", ncs, co, "output channel")}</p>
    <p>Each input pixel stamps a ${k}x${k} kernel onto the output (stride ${k}, no overlap). This output pixel comes from input pixel
    (${o.oy / k + iy}, ${o.ox / k + ix}) through kernel tap (${ty}, ${tx}); the kernel lands on:</p>${mat(land)}
    <p>Largest of the ${Ci} products input[c] x W[c, ${co}, ${ty}, ${tx}]: ${top.map((t) => `ch ${t[0]}: <span class="mono">${num(t[1])}</span>`).join(", ")}</p>
    <table class="mono"><tr><th>sum of products</th><td>${sum.toPrecision(9)}</td></tr><tr><th>+ bias</th><td>${B[co].toPrecision(9)}</td></tr>
    <tr><th>= sum</th><td id="op-sum">${total.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
  bilinear(o, st, W, K, B, O) {
    const c = Math.min(Math.max(st.co, 0), o.c_shown - 1), [wh, ww] = o.wh, Y = o.ys[st.i], X = o.xs[st.j];
    const pts = [[Y[0], X[0], (1 - Y[2]) * (1 - X[2])], [Y[0], X[1], (1 - Y[2]) * X[2]], [Y[1], X[0], Y[2] * (1 - X[2])], [Y[1], X[1], Y[2] * X[2]]];
    let sum = 0; const rows = pts.map((p) => { const v = W[(c * wh + p[0]) * ww + p[1]]; sum += p[2] * v;
      return [[`(${o.wy0 + p[0]}, ${o.wx0 + p[1]})`], [v], [p[2]], [p[2] * v]]; });
    const out = O[(c * o.ry + st.i) * o.rx + st.j];
    return `<h3>Bilinear up-sampling ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", o.c_shown, c, "channel")}
    (align_corners=${o.align_corners})</p><table class="mono"><tr><th>input pixel</th><th>value</th><th>weight</th><th>weight x value</th></tr>
    ${rows.map((r) => "<tr>" + r.map((v) => `<td>${typeof v[0] === "number" ? num(v[0]) : v[0]}</td>`).join("") + "</tr>").join("")}</table>
    <p>The four weights sum to 1: (1 - ${Y[2].toFixed(4)}) and ${Y[2].toFixed(4)} down, (1 - ${X[2].toFixed(4)}) and ${X[2].toFixed(4)} across.</p>
    <table class="mono"><tr><th>= sum</th><td id="op-sum">${sum.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
};

function renderBackward() {
  const b = byName[cur], key = wm ? "wm" : "plain", I = D.images;
  let h = `<h2>Backward: the gradient reaching ${esc(b.name)}</h2><p class="note">Loss: ${esc(D.loss_name)} = ${D.loss.toFixed(5)}.
  The maps are dL/d(output of the block), from the model's own backward (model.backward).</p>`;
  if (D.has_wm) h += `<p><label><input type="checkbox" id="wm-toggle"${wm ? " checked" : ""}> use the U-Net weight map in the loss
  (Ronneberger et al. 2015, eq. 2: large weights in the gaps between touching cells)</label></p>
  <div class="row">${fig(I.dlogits[key], "|dL/dlogits| per pixel " + (wm ? "with" : "without") + " the weight map", 200, 'id="dlogits-map"')}${fig(I.weight, "weight map", 200)}${fig(I.truth, "ground truth", 200)}</div>`;
  if (b.grad) {
    h += `<div class="row">${fig(b.grad_map[key], `gradient norm over channels of ${esc(b.name)}, ${wm ? "with" : "without"} weight map (total ${num(b.grad_norms[key])})`, 220, 'id="grad-map"')}</div>`;
    h += `<h3>dL/d(${esc(b.name)}) per channel</h3>${grid(b.grad, "gradient" + (D.has_wm ? " (with the weight map)" : ""), "grad-grid")}`;
  } else h += `<p>No gradient was recorded for this block.</p>`;
  if (b.contributions) {
    h += `<h3>${b.contributions.length} contributions sum here</h3><p class="note">${esc(b.name)}'s output feeds ${b.contributions.length} consumers;
    in backward each sends a gradient and the gradient of ${esc(b.name)} is their sum (largest deviation of the sum from the recorded gradient: ${b.contrib_sum_error.toExponential(2)}).</p><div class="row">` +
    b.contributions.map((c) => `<div class="contribution">${fig(c.map, `from ${esc(c.block)} (via ${esc(c.via)}), norm ${num(c.norm)}`, 200)}</div>`).join("") +
    `${fig(b.contrib_sum_map, "= their sum", 200)}</div>`;
  }
  if (b.sent) {
    h += `<h3>Gradients this block sends to its ${b.sent.length} inputs</h3><div class="row">` +
    b.sent.map((s) => `<div class="sent">${fig(s.map, `to ${esc(s.to)} ${shp(s.shape)}, norm ${num(s.norm)}`, 160)}</div>`).join("") + `</div>`;
  }
  h += `<h3>Gradient norm per level (${wm ? "with" : "without"} the weight map)</h3><table id="levels"><tr><th>level</th><th>block</th><th>||dL/d output||</th><th></th></tr>`;
  let mx = 0; Object.values(D.levels).forEach((l) => l.forEach((r) => mx = Math.max(mx, r[1][key] || 0)));
  Object.entries(D.levels).forEach(([lv, l]) => l.forEach((r) => {
    h += `<tr${r[0] === b.name ? ' class="hl"' : ""}><td>${(+lv).toFixed(1)}</td><td style="text-align:left">${esc(r[0])}</td><td class="mono">${num(r[1][key])}</td>
    <td style="text-align:left"><span class="bar" style="width:${Math.round(200 * Math.sqrt((r[1][key] || 0) / (mx || 1)))}px"></span></td></tr>`; }));
  $("backward").innerHTML = h + "</table><p class='note'>Bars: square root of the norm, relative to the largest.</p>";
  const t = $("wm-toggle"); if (t) t.onchange = () => { wm = t.checked; renderBackward(); };
}

let snap = D.snapshots ? D.snapshots.length - 1 : 0;  // the final weights first
function renderTraining() {
  const S = D.snapshots;
  if (!S) { $("training").innerHTML = `<p>This page has one set of weights. A run folder with several checkpoints,
  or <span class="mono">npunet explain --model NAME --epochs-snapshots 1,3,10</span>, adds a slider over epochs here.</p>`; return; }
  const s = S[snap], f = s.features[cur];
  $("training").innerHTML = `<h2>Training</h2><p><input type="range" id="slider" min="0" max="${S.length - 1}" value="${snap}"> <b id="snap-label">${esc(s.label)}</b></p>
  <div class="row">${fig(s.prob, "prediction", 220)}${fig(D.images.truth, "ground truth", 220)}</div>
  ${f ? `<h3>${esc(cur)} (choose another block on the left)</h3>` + grid(f, "features", "snap-grid") : ""}`;
  $("slider").oninput = (e) => { snap = +e.target.value; renderTraining(); };
}

function render(view) {
  ({overview: renderOverview, block: renderBlock, op: renderOp, backward: renderBackward, training: renderTraining})[view]();
}
$("subtitle").textContent = `${D.model}, ${D.params.toLocaleString()} parameters, input ${shp(D.images.in_shape)}. ` + D.note;
$("blocklist").innerHTML = D.blocks.map((b) => `<button data-block="${esc(b.name)}" title="${esc(b.cls)} ${shp(b.out_shape)}">${esc(b.name)}</button>`).join("");
document.querySelectorAll("#blocklist button").forEach((x) => x.onclick = () => {
  const v = current(); select(x.dataset.block, v === "overview" ? "block" : v); });
document.querySelectorAll("nav button").forEach((x) => x.onclick = () => show(x.dataset.view));
if (!D.snapshots) $("nav-training").title = "one set of weights: no training slider";
renderOverview();
document.querySelectorAll("#blocklist button")[0].classList.add("on");
"""
