"""Exercises (lessons/exercises/): the student writes a forward and its backward; ``check`` runs them
on small float64 cases and compares them with npunet's reference ops.

    python -m npunet check conv2d              # checks lessons/exercises/01_conv2d.py
    python -m npunet check path/to/my_conv.py  # any file that defines the exercise's functions
    python -m npunet check conv2d --solution   # the teacher's solution (lessons/exercises/solutions/)
    check("conv2d", globals())                 # from the exercise notebook itself

For every case the checker
  1. runs the reference op and the student's forward on the same inputs and compares the outputs;
  2. sends the same random upstream gradient dout through both backwards and compares every
     gradient (inputs and parameters): relative error max|a - e| / max(max|a|, max|e|) <= 1e-6.
     The expected gradients are the reference backward's, which the test suite checks against
     central finite differences of the reference forward;
  3. checks that nothing was written into the inputs or into dout.
A failure names the output or gradient, the element where the error peaks, both values, the
relative error and a hint; when a backward is wrong it also tells whether it at least matches
finite differences of the student's own forward.
"""
import os
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

TOL = 1e-6
_loading = False      # True while check() imports an exercise file: its own check(...) cell is skipped


# ================================================================== comparison and hints

def _rel_error(a, e):
    """max|a - e| / max(max|a|, max|e|) and the flat index where |a - e| peaks."""
    diff = np.abs(a - e)
    i = int(np.argmax(diff))
    scale = max(float(np.abs(a).max()), float(np.abs(e).max()))
    return (float(diff.flat[i]) / scale if scale > 0 else 0.0), i


def _pattern(a, e):
    """A hint read off the numbers: a constant factor, a transpose, or errors only on the border."""
    ee = float((e * e).sum())
    if ee > 0:
        c = float((a * e).sum()) / ee
        if abs(c - 1) > 1e-3 and np.abs(a - c * e).max() <= 1e-6 * np.abs(e).max():
            return f"your values are exactly {c:.4g} x the expected ones: a missing or extra factor (or sign)"
    if a.ndim >= 2 and a.shape[-1] == a.shape[-2] and np.allclose(np.swapaxes(a, -1, -2), e, rtol=1e-9, atol=1e-12):
        return "your values are the expected ones with the last two axes swapped (rows and columns)"
    if a.ndim == 4 and min(a.shape[2:]) > 2:
        wrong = np.abs(a - e) > 1e-6 * max(np.abs(e).max(), 1e-30)
        if wrong.any() and not wrong[:, :, 1:-1, 1:-1].any():
            return "only the border rows/columns are wrong: look at the padding, the crop offsets or the edge weights"
    return ""


def _where(name, shape, i):
    return f"{name}[{', '.join(str(int(k)) for k in np.unravel_index(i, shape))}]" if shape else name


@dataclass
class Finding:
    case: str           # "case 1 (N=2, C=3, ...)" or "" for the whole file
    name: str           # "forward out", "backward dw"
    ok: bool
    message: str


@dataclass
class Report:
    exercise: str
    title: str
    source: str
    findings: list = field(default_factory=list)
    case: str = ""      # the case the next findings belong to

    @property
    def ok(self):
        return bool(self.findings) and all(f.ok for f in self.findings)

    def add(self, name, ok, message=""):
        self.findings.append(Finding(self.case, name, ok, message))
        return ok

    def __str__(self):
        bad = [f for f in self.findings if not f.ok]
        lines = [f"check {self.exercise}, {self.title} ({self.source}): " +
                 ("all checks passed" if self.ok else f"{len(bad)} of {len(self.findings)} checks failed")]
        case = None
        for f in self.findings:
            if f.case != case:
                case = f.case
                lines.append(f"  {case}")
            lines.append(f"    {'ok   ' if f.ok else 'WRONG'}  {f.name}" + (f": {f.message}" if f.message else ""))
        return "\n".join(lines)


def _compare(report, label, name, got, want, hint):
    """One output or gradient: shape, dtype, values."""
    if got is None:
        return report.add(label, False, f"got None for {name}. Hint: {hint}")
    got = np.asarray(got) if np.isscalar(got) or isinstance(got, (list, tuple)) else got
    if not isinstance(got, np.ndarray):
        return report.add(label, False, f"{name} should be a NumPy array, got {type(got).__name__}")
    if got.shape != np.shape(want):
        return report.add(label, False, f"{name} has shape {got.shape}, expected {np.shape(want)}. Hint: {hint}")
    if np.ndim(want) and got.dtype != want.dtype:
        return report.add(label, False, f"{name} is {got.dtype} for {want.dtype} inputs: keep the input's dtype "
                                        f"(float64 here, for the check)")
    if not np.all(np.isfinite(got)):
        return report.add(label, False, f"{name} holds NaN or Inf at {_where(name, got.shape, int(np.argmin(np.isfinite(got))))}")
    want = np.asarray(want, dtype=np.float64)
    err, i = _rel_error(got.astype(np.float64), want)
    if err <= TOL:
        return report.add(label, True, f"relative error {err:.1e}")
    seen = _pattern(got.astype(np.float64), want)
    return report.add(label, False, f"relative error {err:.1e} at {_where(name, got.shape, i)}: yours "
                                    f"{got.flat[i]:.6g}, expected {want.flat[i]:.6g}. Hint: {hint}"
                                    + (f" ({seen})" if seen else ""))


# ================================================================== the exercises

@dataclass
class Exercise:
    """name: what ``npunet check`` takes; file: in lessons/exercises/; functions: what the student writes.
    reference(): a namespace with the same functions built from npunet's reference ops.
    cases: keyword dicts for make(case, rng) -> inputs (arrays, and modules for the model parts).
    forward(impl, inputs, case) -> ({output name: array}, state); backward(impl, state, douts) ->
    {gradient name: array}.  hints: output/gradient name -> what to look at."""
    name: str
    file: str
    title: str
    functions: tuple
    reference: object
    cases: list
    make: object
    forward: object
    backward: object
    hints: dict


def _arr(rng, *shape):
    return rng.standard_normal(shape)


def _unpack(result, n, what):
    if not isinstance(result, tuple) or len(result) != n:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise _Shape(f"{what} must return a tuple of {n}, got {got}")
    return result


class _Shape(Exception):
    pass


def _params(prefix, module):
    """Parameter gradients of a module, named like its state_dict under prefix."""
    return {f"{prefix}.{k}": p.grad for k, p in module.named_parameters()}


# -- 1 convolution
def _conv_ref():
    from .backends import reference as R
    return SimpleNamespace(conv2d_forward=lambda x, w, b, stride=1, padding=0: R.conv2d_forward(x, w, b, stride, padding),
                           conv2d_backward=R.conv2d_backward)


def _conv_make(rng, N, C, H, W, O, k, stride, padding):
    return dict(x=_arr(rng, N, C, H, W), w=_arr(rng, O, C, k, k), b=_arr(rng, O))


def _conv_fwd(impl, inp, case):
    out, cache = _unpack(impl.conv2d_forward(inp["x"], inp["w"], inp["b"], stride=case["stride"],
                                             padding=case["padding"]), 2, "conv2d_forward")
    return {"out": out}, cache


def _conv_bwd(impl, cache, d):
    dx, dw, db = _unpack(impl.conv2d_backward(d["out"], cache), 3, "conv2d_backward")
    return {"dx": dx, "dw": dw, "db": db}


# -- 2 max-pool
def _pool_ref():
    from .backends import reference as R
    return SimpleNamespace(maxpool_forward=lambda x, kernel_size=2, stride=2: R.maxpool2d_forward(x, kernel_size, stride),
                           maxpool_backward=R.maxpool2d_backward)


def _pool_fwd(impl, inp, case):
    out, cache = _unpack(impl.maxpool_forward(inp["x"], kernel_size=case["k"], stride=case["stride"]), 2,
                         "maxpool_forward")
    return {"out": out}, cache


def _pool_bwd(impl, cache, d):
    return {"dx": impl.maxpool_backward(d["out"], cache)}


# -- 3 up-convolution
def _upconv_ref():
    from .backends import reference as R
    return SimpleNamespace(upconv_forward=lambda x, w, b, stride=2: R.conv_transpose2d_forward(x, w, b, stride),
                           upconv_backward=R.conv_transpose2d_backward)


def _upconv_make(rng, N, C, H, W, O, k, stride):
    return dict(x=_arr(rng, N, C, H, W), w=_arr(rng, C, O, k, k), b=_arr(rng, O))


def _upconv_fwd(impl, inp, case):
    out, cache = _unpack(impl.upconv_forward(inp["x"], inp["w"], inp["b"], stride=case["stride"]), 2, "upconv_forward")
    return {"out": out}, cache


def _upconv_bwd(impl, cache, d):
    dx, dw, db = _unpack(impl.upconv_backward(d["out"], cache), 3, "upconv_backward")
    return {"dx": dx, "dw": dw, "db": db}


# -- 4 bilinear up-sampling
def _bilinear_ref():
    from .backends import reference as R

    def forward(x, scale=2, align_corners=False):
        H, W = x.shape[2:]
        return R.interpolate_forward(x, (H * scale, W * scale), "bilinear", align_corners, (scale, scale))
    return SimpleNamespace(bilinear_forward=forward, bilinear_backward=R.interpolate_backward)


def _bilinear_fwd(impl, inp, case):
    out, cache = _unpack(impl.bilinear_forward(inp["x"], scale=case["scale"], align_corners=case["align_corners"]),
                         2, "bilinear_forward")
    return {"out": out}, cache


def _bilinear_bwd(impl, cache, d):
    return {"dx": impl.bilinear_backward(d["out"], cache)}


# -- 5 BatchNorm (training mode)
def _bn_ref():
    from .backends import reference as R

    def forward(x, gamma, beta, eps=1e-5):
        C = x.shape[1]
        return R.batchnorm2d_forward(x, gamma, beta, np.zeros(C), np.ones(C), True, eps=eps)[:2]
    return SimpleNamespace(batchnorm_forward=forward, batchnorm_backward=R.batchnorm2d_backward)


def _bn_make(rng, N, C, H, W):
    return dict(x=3 * _arr(rng, N, C, H, W) + 1, gamma=_arr(rng, C), beta=_arr(rng, C))


def _bn_fwd(impl, inp, case):
    out, cache = _unpack(impl.batchnorm_forward(inp["x"], inp["gamma"], inp["beta"]), 2, "batchnorm_forward")
    return {"out": out}, cache


def _bn_bwd(impl, cache, d):
    dx, dg, db = _unpack(impl.batchnorm_backward(d["out"], cache), 3, "batchnorm_backward")
    return {"dx": dx, "dgamma": dg, "dbeta": db}


# -- 6 crop and concatenate
def _crop_ref():
    from .backends import reference as R
    return SimpleNamespace(crop_concat_forward=R.crop_concat_forward, crop_concat_backward=R.crop_concat_backward)


def _crop_make(rng, N, Cs, Hs, Ws, Cx, H, W):
    return dict(skip=_arr(rng, N, Cs, Hs, Ws), x=_arr(rng, N, Cx, H, W))


def _crop_fwd(impl, inp, case):
    out, cache = _unpack(impl.crop_concat_forward(inp["skip"], inp["x"]), 2, "crop_concat_forward")
    return {"out": out}, cache


def _crop_bwd(impl, cache, d):
    dskip, dx = _unpack(impl.crop_concat_backward(d["out"], cache), 2, "crop_concat_backward")
    return {"dskip": dskip, "dx": dx}


# -- 7 Dice loss
def _dice_ref():
    from .losses import DiceLoss

    def forward(logits, target, smooth=1.0):
        loss = DiceLoss(smooth=smooth)
        return loss.forward(logits, target), loss
    return SimpleNamespace(dice_loss_forward=forward, dice_loss_backward=lambda loss: loss.backward())


def _dice_make(rng, N, H, W, smooth):
    return dict(logits=2 * _arr(rng, N, 1, H, W), target=(rng.random((N, 1, H, W)) < 0.4).astype(np.float64))


def _dice_fwd(impl, inp, case):
    loss, cache = _unpack(impl.dice_loss_forward(inp["logits"], inp["target"], smooth=case["smooth"]), 2,
                          "dice_loss_forward")
    return {"loss": np.float64(loss)}, cache


def _dice_bwd(impl, cache, d):
    return {"dlogits": d["loss"] * np.asarray(impl.dice_loss_backward(cache))}


# -- 8 a U-Net++ node and the summed gradients of a dense row
def _conv_block(nn, cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()).to(np.float64)


def _unetpp_ref():
    from . import nn

    def node_forward(same_row, below, up, conv):
        cat = nn.Concat()
        return conv(cat(*same_row, up(below))), (cat, up, conv)

    def node_backward(dout, cache):
        cat, up, conv = cache
        parts = cat.backward(conv.backward(dout))
        return list(parts[:-1]), up.backward(parts[-1])

    def row_forward(x00, x10, x11, ups, convs):
        X = {(0, 0): x00, (1, 0): x10, (1, 1): x11}
        caches = {}
        for j in (1, 2):
            X[0, j], caches[j] = node_forward([X[0, k] for k in range(j)], X[1, j - 1], ups[j - 1], convs[j - 1])
        return X[0, 2], caches

    def row_backward(dx02, caches):
        dX = {(0, 2): dx02}
        for j in (2, 1):                                 # the mirror image; a map's gradients accumulate
            same, below = node_backward(dX.pop((0, j)), caches[j])
            for k, g in enumerate(same):
                dX[0, k] = dX.get((0, k), 0) + g
            dX[1, j - 1] = below
        return dX[0, 0], dX[1, 0], dX[1, 1]
    return SimpleNamespace(node_forward=node_forward, node_backward=node_backward, row_forward=row_forward,
                           row_backward=row_backward)


def _unetpp_make(rng, N, f0, f1, H, seed, part):
    from . import nn
    with _seeded(seed):
        ups = [nn.ConvTranspose2d(f1, f0, 2, stride=2).to(np.float64) for _ in range(2)]
        convs = [_conv_block(nn, 2 * f0, f0), _conv_block(nn, 3 * f0, f0)]
    return dict(x00=_arr(rng, N, f0, H, H), x10=_arr(rng, N, f1, H // 2, H // 2), x11=_arr(rng, N, f1, H // 2, H // 2),
                ups=ups, convs=convs)


def _unetpp_fwd(impl, inp, case):
    if case["part"] == "node":
        out, cache = _unpack(impl.node_forward([inp["x00"]], inp["x10"], inp["ups"][0], inp["convs"][0]), 2,
                             "node_forward")
        return {"x01": out}, (cache, inp)
    out, cache = _unpack(impl.row_forward(inp["x00"], inp["x10"], inp["x11"], inp["ups"], inp["convs"]), 2,
                         "row_forward")
    return {"x02": out}, (cache, inp)


def _unetpp_bwd(impl, state, d):
    cache, inp = state
    if "x01" in d:
        same, dx10 = _unpack(impl.node_backward(d["x01"], cache), 2, "node_backward")
        if not isinstance(same, (list, tuple)) or len(same) != 1:
            raise _Shape("node_backward must return (list of the same-row gradients, d_below): one per same-row input")
        grads = {"dx00": same[0], "dx10": dx10}
        grads.update(_params("ups[0]", inp["ups"][0]))
        grads.update(_params("convs[0]", inp["convs"][0]))
        return grads
    dx00, dx10, dx11 = _unpack(impl.row_backward(d["x02"], cache), 3, "row_backward")
    grads = {"dx00": dx00, "dx10": dx10, "dx11": dx11}
    for k in range(2):
        grads.update(_params(f"ups[{k}]", inp["ups"][k]))
        grads.update(_params(f"convs[{k}]", inp["convs"][k]))
    return grads


class _seeded:
    """Identical modules on every call: npunet.init's generator reseeded, then restored."""

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        from . import init
        self.saved = init._rng
        init._rng = np.random.default_rng(self.seed)

    def __exit__(self, *exc):
        from . import init
        init._rng = self.saved


# -- 9 a UNet 3+ decoder stage
def _unet3p_ref():
    from .models.unet3plus import Branch, Fuse

    def stage_forward(enc, dec, convs, fuse):
        i = len(enc)
        branches = []
        for k, (x, conv) in enumerate(zip(list(enc) + list(dec), convs), start=1):
            resample = ("pool", 2 ** (i - k)) if k < i else ("up", 2 ** (k - i)) if k > i else None
            b = Branch(1, 1, resample).to(np.float64)
            b.conv, b.bn = conv[0], conv[1]                  # the given modules inside the library's Branch
            branches.append(b)
        f = Fuse(len(convs), 1).to(np.float64)
        f.conv, f.bn = fuse[0], fuse[1]
        parts = [b(x) for b, x in zip(branches, list(enc) + list(dec))]
        return f(*parts), (branches, f, i)

    def stage_backward(dout, cache):
        branches, f, i = cache
        d = [b.backward(g) for b, g in zip(branches, f.backward(dout))]
        return d[:i], d[i:]
    return SimpleNamespace(stage_forward=stage_forward, stage_backward=stage_backward)


def _unet3p_make(rng, N, filters, cat, H1, stage, seed):
    from . import nn
    with _seeded(seed):
        convs = [_conv_block(nn, f, cat) for f in filters]
        fuse = _conv_block(nn, len(filters) * cat, len(filters) * cat)
    maps = [_arr(rng, N, f, H1 >> k, H1 >> k) for k, f in enumerate(filters)]
    return dict(enc=maps[:stage], dec=maps[stage:], convs=convs, fuse=fuse)


def _unet3p_fwd(impl, inp, case):
    out, cache = _unpack(impl.stage_forward(inp["enc"], inp["dec"], inp["convs"], inp["fuse"]), 2, "stage_forward")
    return {"hd": out}, (cache, inp)


def _unet3p_bwd(impl, state, d):
    cache, inp = state
    d_enc, d_dec = _unpack(impl.stage_backward(d["hd"], cache), 2, "stage_backward")
    if len(d_enc) != len(inp["enc"]) or len(d_dec) != len(inp["dec"]):
        raise _Shape(f"stage_backward must return ({len(inp['enc'])} encoder gradients, {len(inp['dec'])} decoder "
                     f"gradients), got ({len(d_enc)}, {len(d_dec)})")
    grads = {f"d_enc[{k}]": g for k, g in enumerate(d_enc)}
    grads.update({f"d_dec[{k}]": g for k, g in enumerate(d_dec)})
    for k, conv in enumerate(inp["convs"]):
        grads.update(_params(f"convs[{k}]", conv))
    grads.update(_params("fuse", inp["fuse"]))
    return grads


EXERCISES = {e.name: e for e in [
    Exercise("conv2d", "01_conv2d.py", "convolution", ("conv2d_forward", "conv2d_backward"), _conv_ref,
             [dict(N=2, C=3, H=7, W=6, O=4, k=3, stride=1, padding=1), dict(N=1, C=2, H=8, W=9, O=3, k=3, stride=2, padding=0),
              dict(N=2, C=2, H=6, W=5, O=3, k=2, stride=2, padding=1)],
             _conv_make, _conv_fwd, _conv_bwd,
             {"out": "out[n, o, i, j] = sum over c, u, v of x_pad[n, c, i*s + u, j*s + v] * w[o, c, u, v] + b[o], "
                     "H_out = (H + 2p - k) // s + 1; a cross-correlation (the kernel is not flipped)",
              "dx": "dcols = W^T @ dout, then col2im: overlapping patches ADD their gradients, and the padding "
                    "border is cut off at the end",
              "dw": "dW = dout @ cols^T: every image of the batch used the same W, so their contributions add",
              "db": "db[o] = dout[:, o] summed over the batch and all output pixels"}),
    Exercise("maxpool", "02_maxpool.py", "max-pool", ("maxpool_forward", "maxpool_backward"), _pool_ref,
             [dict(N=2, C=3, H=8, W=6, k=2, stride=2), dict(N=1, C=2, H=7, W=9, k=2, stride=2),
              dict(N=2, C=2, H=7, W=7, k=3, stride=2)],
             lambda rng, N, C, H, W, k, stride: dict(x=_arr(rng, N, C, H, W)), _pool_fwd, _pool_bwd,
             {"out": "H_out = (H - k) // s + 1 (floor: an odd last row is dropped); the max over each k x k window",
              "dx": "each window's gradient goes to the pixel that was its maximum, 0 everywhere else; with "
                    "overlapping windows (k > s) a pixel can win twice and its gradients add"}),
    Exercise("upconv", "03_upconv.py", "up-convolution", ("upconv_forward", "upconv_backward"), _upconv_ref,
             [dict(N=2, C=3, H=4, W=5, O=2, k=2, stride=2), dict(N=1, C=2, H=3, W=3, O=3, k=3, stride=2),
              dict(N=2, C=2, H=3, W=4, O=2, k=2, stride=1)],
             _upconv_make, _upconv_fwd, _upconv_bwd,
             {"out": "every input pixel stamps w[c] (C_out, k, k) scaled by x[n, c, i, j] at (i*s, j*s), and the "
                     "stamps add; H_out = (H - 1) * s + k; w has PyTorch's layout (C_in, C_out, k, k)",
              "dx": "dx[n, c, i, j] = sum over o, u, v of dout[n, o, i*s + u, j*s + v] * w[c, o, u, v]: a "
                    "convolution of dout",
              "dw": "dw[c, o, u, v] = sum over n, i, j of x[n, c, i, j] * dout[n, o, i*s + u, j*s + v]",
              "db": "db[o] = dout[:, o] summed over the batch and all output pixels"}),
    Exercise("bilinear", "04_bilinear.py", "bilinear up-sampling", ("bilinear_forward", "bilinear_backward"),
             _bilinear_ref,
             [dict(N=2, C=2, H=4, W=5, scale=2, align_corners=False), dict(N=1, C=2, H=3, W=4, scale=3, align_corners=False),
              dict(N=2, C=1, H=4, W=3, scale=2, align_corners=True)],
             lambda rng, N, C, H, W, scale, align_corners: dict(x=_arr(rng, N, C, H, W)), _bilinear_fwd, _bilinear_bwd,
             {"out": "out = My @ x @ Mx^T; align_corners=False samples output pixel i at its half-pixel centre, src = (i + 0.5) / scale - 0.5 "
                     "clamped at 0; align_corners=True at src = i * (H - 1) / (H_out - 1)",
              "dx": "a linear map's backward is its transpose: dx = My^T @ dout @ Mx"}),
    Exercise("batchnorm", "05_batchnorm.py", "BatchNorm (training mode)", ("batchnorm_forward", "batchnorm_backward"),
             _bn_ref, [dict(N=2, C=3, H=4, W=5), dict(N=4, C=2, H=3, W=3)], _bn_make, _bn_fwd, _bn_bwd,
             {"out": "per channel over (N, H, W): xhat = (x - mean) / sqrt(var + eps) with the biased variance "
                     "(divide by M = N*H*W), out = gamma * xhat + beta",
              "dx": "the mean and the variance depend on x too: dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * "
                    "sum(dxhat * xhat)), dxhat = dout * gamma, sums per channel",
              "dgamma": "dgamma = sum of dout * xhat over (N, H, W)",
              "dbeta": "dbeta = sum of dout over (N, H, W)"}),
    Exercise("crop_concat", "06_crop_concat.py", "copy, crop and concatenate", ("crop_concat_forward",
                                                                             "crop_concat_backward"), _crop_ref,
             [dict(N=2, Cs=2, Hs=9, Ws=9, Cx=3, H=5, W=5), dict(N=1, Cs=3, Hs=8, Ws=7, Cx=2, H=5, W=4)],
             _crop_make, _crop_fwd, _crop_bwd,
             {"out": "centre crop: start at ((Hs - H) // 2, (Ws - W) // 2), then [skip, x] on the channel axis "
                     "(skip first, as the paper's figure)",
              "dskip": "the first Cs channels of dout go back into the cropped window; the border the crop cut off "
                       "gets 0",
              "dx": "the last Cx channels of dout"}),
    Exercise("dice", "07_dice.py", "Dice loss", ("dice_loss_forward", "dice_loss_backward"), _dice_ref,
             [dict(N=2, H=5, W=6, smooth=1.0), dict(N=3, H=4, W=4, smooth=0.5)], _dice_make, _dice_fwd, _dice_bwd,
             {"loss": "p = sigmoid(logits); per image d = (2 sum(p*y) + s) / (sum(p) + sum(y) + s); loss = 1 - mean(d)",
              "dlogits": "dd/dp = (2 y (Sp + Sy + s) - (2 I + s)) / (Sp + Sy + s)^2 per image, then the mean's "
                         "1/N, the minus sign, and dp/dz = p (1 - p)"}),
    Exercise("unetpp_node", "08_unetpp_node.py", "a U-Net++ node and its summed gradients",
             ("node_forward", "node_backward", "row_forward", "row_backward"), _unetpp_ref,
             [dict(N=2, f0=2, f1=3, H=6, seed=1, part="node"), dict(N=2, f0=2, f1=3, H=6, seed=2, part="row")],
             _unetpp_make, _unetpp_fwd, _unetpp_bwd,
             {"x01": "X^{0,1} = conv(concat([X^{0,0}, up(X^{1,0})])): the same-row maps first, the up-sampled one last",
              "x02": "X^{0,2} = conv(concat([X^{0,0}, X^{0,1}, up(X^{1,1})]))",
              "dx00": "X^{0,0} feeds X^{0,1} and X^{0,2}: its gradient is the SUM of what both consumers send back",
              "dx10": "split dcat by channels (the last block belongs to up(X^{1,0})), then up.backward",
              "dx11": "the last channel block of X^{0,2}'s concat, through ups[1].backward",
              "param": "call each module's backward exactly once per forward: it adds into its parameters' .grad"}),
    Exercise("unet3p_stage", "09_unet3p_stage.py", "a UNet 3+ decoder stage", ("stage_forward", "stage_backward"),
             _unet3p_ref,
             [dict(N=2, filters=(2, 3, 2, 3, 2), cat=2, H1=16, stage=2, seed=3),
              dict(N=2, filters=(2, 2, 3, 2, 3), cat=2, H1=16, stage=4, seed=4)],
             _unet3p_make, _unet3p_fwd, _unet3p_bwd,
             {"hd": "stage i: encoder map k < i max-pooled by 2^(i-k), k = i as is, decoder map k > i bilinear "
                    "up-sampled by 2^(k-i) (align_corners=False); each through its conv block, concatenated in "
                    "order k = 1..5, then the fuse block",
              "d_enc": "split dcat into the five blocks, each back through its conv block, then the max-pool's backward",
              "d_dec": "each decoder block back through its conv block, then the bilinear backward",
              "param": "call each module's backward exactly once per forward: it adds into its parameters' .grad"}),
]}


def _hint(ex, name):
    """The hint for an output or gradient: by its name ("d_enc[1]" -> "d_enc"), or the parameters' one."""
    base = name.split("[")[0]
    if base in ex.hints:
        return ex.hints[base]
    return ex.hints.get("param", "the gradient of a parameter: the module's backward adds it into .grad")


# ================================================================== running a check

def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return [_copy(a) for a in v]
    return v


def _same(a, b):
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, list):
        return all(_same(x, y) for x, y in zip(a, b))
    return True


def _arrays(inp):
    """(name, array) for every array input, lists unrolled as name[k]."""
    for k, v in inp.items():
        if isinstance(v, np.ndarray):
            yield k, v
        elif isinstance(v, list):
            for i, a in enumerate(v):
                if isinstance(a, np.ndarray):
                    yield f"{k}[{i}]", a


def _grad_input(gname, inp):
    """The input array a gradient name belongs to ("dx" -> x, "d_enc[1]" -> enc[1]), or None."""
    arrays = dict(_arrays(inp))
    for key in (gname[1:], gname[2:]):
        if key in arrays:
            return key
    return None


def _fd_agreement(ex, impl, case, seed, douts, key, index, h=1e-6):
    """Central difference of sum(dout * forward) of impl with respect to input `key` at `index`."""
    def value(sign):
        inp = ex.make(np.random.default_rng(seed), **case)
        arr = dict(_arrays(inp))[key]
        arr.flat[index] += sign * h
        outs, _ = ex.forward(impl, inp, case)
        return sum(float((np.asarray(outs[n], dtype=np.float64) * douts[n]).sum()) for n in outs)
    return (value(1) - value(-1)) / (2 * h)


def _run_case(ex, impl, case, seed, douts, report, ref_outs, ref_grads):
    inp = ex.make(np.random.default_rng(seed), **case)
    before = {k: _copy(v) for k, v in inp.items()}
    try:
        outs, state = ex.forward(impl, inp, case)
    except Exception as e:  # noqa: BLE001 - the student's code: report whatever it raised
        return report.add("forward", False, _explain(e))
    fwd_ok = True
    for name, want in ref_outs.items():
        fwd_ok &= _compare(report, f"forward {name}", name, outs.get(name), want, _hint(ex, name))
    if not all(_same(before[k], inp[k]) for k in inp):
        fwd_ok = report.add("forward", False, "your forward wrote into its inputs: build new arrays instead")
    d_before = {k: v.copy() for k, v in douts.items()}
    try:
        grads = ex.backward(impl, state, {k: v for k, v in douts.items()})
    except Exception as e:  # noqa: BLE001
        return report.add("backward", False, _explain(e))
    if not all(np.array_equal(d_before[k], douts[k]) for k in douts):
        report.add("backward", False, "your backward wrote into dout: in a U-Net one tensor's gradient "
                                               "arrives from two consumers and must be added, so never modify dout")
    for name, want in ref_grads.items():
        got = grads.get(name)
        if got is None and "." in name:
            report.add(f"backward {name}", False, f"no gradient in {name}: its module's backward was never "
                                                          f"called")
            continue
        if _compare(report, f"backward {name}", name, got, want, _hint(ex, name)) or got is None:
            continue
        key = _grad_input(name, inp)
        if key is None or np.shape(got) != np.shape(want):
            continue
        i = int(np.argmax(np.abs(np.asarray(got, dtype=np.float64) - want)))
        fd = _fd_agreement(ex, impl, case, seed, douts, key, i)
        g = float(np.asarray(got).flat[i])
        agree = abs(fd - g) <= 1e-5 * max(abs(fd), abs(g), 1e-8)
        f = report.findings[-1]
        if fwd_ok and not agree:
            f.message += (f"; finite differences of your forward give {fd:.6g} there: the forward is right, "
                          f"the backward is what needs fixing")
        elif agree and not fwd_ok:
            f.message += (f"; your backward is the exact gradient of your forward (finite differences give "
                          f"{fd:.6g} there): fix the forward first")
        elif not agree:
            f.message += f"; it does not match finite differences of your own forward either ({fd:.6g})"
    return True


def _explain(e):
    if isinstance(e, NotImplementedError):
        return f"not written yet: {e}" if str(e) else "not written yet (NotImplementedError)"
    if isinstance(e, _Shape):
        return str(e)
    package = os.path.dirname(os.path.abspath(__file__))
    mine = [t for t in traceback.extract_tb(e.__traceback__) if not os.path.abspath(t.filename).startswith(package)]
    at = f" (line {mine[-1].lineno} of {os.path.basename(mine[-1].filename)}: {mine[-1].line})" if mine else ""
    return f"raised {type(e).__name__}: {e}{at}"


def _random_douts(outs, rng):
    return {k: (rng.standard_normal(np.shape(v)) if np.ndim(v) else np.float64(rng.standard_normal()))
            for k, v in outs.items()}


def check_namespace(name, namespace, source="your code", verbose=True):
    """Check the functions of exercise `name` found in `namespace` (a dict or module). Returns a Report."""
    ex = _exercise(name)
    ns = namespace if isinstance(namespace, dict) else vars(namespace)
    report = Report(ex.name, ex.title, source)
    missing = [f for f in ex.functions if not callable(ns.get(f))]
    if missing:
        report.add("definitions", False, f"define {', '.join(missing)} (the exercise's functions, with these names)")
    else:
        impl = SimpleNamespace(**{f: ns[f] for f in ex.functions})
        ref = ex.reference()
        with np.errstate(all="ignore"):
            for c, case in enumerate(ex.cases):
                seed = 1000 + c
                ref_outs, state = ex.forward(ref, ex.make(np.random.default_rng(seed), **case), case)
                douts = _random_douts(ref_outs, np.random.default_rng(seed + 1))
                ref_grads = ex.backward(ref, state, douts)
                report.case = f"case {c + 1}: " + ", ".join(f"{k}={v}" for k, v in case.items() if k != "seed")
                _run_case(ex, impl, case, seed, douts, report, ref_outs, ref_grads)
    if verbose:
        print(report)
        if not report.ok:
            print(f"  (the solution is in lessons/exercises/solutions/{ex.file}: try on your own first)")
    return report


def _exercise(name):
    key = os.path.basename(str(name))
    key = key[:-3] if key.endswith(".py") else key
    for ex in EXERCISES.values():
        if key in (ex.name, ex.file[:-3], ex.file[:2], ex.file[:2].lstrip("0")):
            return ex
    raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")


def find_file(name, solution=False):
    """lessons/exercises/NN_name.py (or solutions/NN_name.py) under the working directory or the
    repository npunet was installed from."""
    if os.path.isfile(str(name)):
        return os.path.abspath(name)
    ex = _exercise(name)
    sub = os.path.join("solutions", ex.file) if solution else ex.file
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    places = [os.path.join(os.getcwd(), "lessons", "exercises"), os.path.join(os.getcwd(), "exercises"), os.getcwd(),
              os.path.join(repo, "lessons", "exercises")]
    for p in places:
        if os.path.isfile(os.path.join(p, sub)):
            return os.path.join(p, sub)
    raise FileNotFoundError(f"exercise file {sub} not found in: {', '.join(places)} (the exercises come with the "
                            f"repository: run from its folder, or pass the file's path)")


def check(name, namespace=None, path=None, solution=False, verbose=True):
    """Check an exercise. check("conv2d", globals()) in the exercise's own notebook checks the functions
    defined there; check("conv2d") or check(path=...) loads the file and checks its functions.
    Returns the Report (report.ok), or None while the file is being loaded by another check."""
    global _loading
    if _loading:
        return None
    if namespace is not None:
        return check_namespace(name, namespace, "the functions defined here", verbose)
    path = path or find_file(name, solution)
    _loading = True
    try:
        ns = runpy.run_path(path, run_name="__npunet_exercise__")
    except Exception as e:  # noqa: BLE001 - a syntax error or a failing top-level cell in the student's file
        ex = _exercise(name)
        report = Report(ex.name, ex.title, path)
        report.add("loading", False, f"the file did not run: {type(e).__name__}: {e}")
        if verbose:
            print(report)
        return report
    finally:
        _loading = False
    return check_namespace(name, ns, os.path.relpath(path), verbose)


def main(name, solution=False):
    """`npunet check NAME [--solution]`: exit status 0 when every check passes."""
    try:
        report = check(name, solution=solution)
    except (KeyError, FileNotFoundError) as e:
        print(f"npunet check: {e.args[0]}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1
