"""The direct 3x3 convolution for few channels (kernels.direct, fast backend strategy ``direct``):
kernels against their NumPy twins, the strategy against the reference backend and central differences,
its float32 error, and when conv.py chooses it."""
import numpy as np
import pytest

import npunet
from npunet.backends import fast, reference
from npunet.kernels import direct as KD
from npunet.kernels.util import split


def rel(a, r):
    return float(np.abs(a - r).max() / max(np.abs(r).max(), 1e-300))


def _run_conv(xp, w, b, out_shape):
    """conv3x3 over all its units, as the strategy runs it."""
    out = np.full(out_shape, np.nan, xp.dtype)
    N, O, H, W = out_shape
    R = max(1, min(H, KD.ROWS_ELEMS // (W + 2)))
    split(KD.conv3x3, N * ((O + 3) // 4) * ((H + R - 1) // R), xp.reshape(N, xp.shape[1], -1), W + 2, w, b, out)
    return out


SHAPES = [  # (N, C, O, H, W): odd sizes, O not a multiple of 4, one channel, several row blocks (W = 300)
    (2, 3, 5, 7, 9), (1, 1, 1, 1, 1), (3, 2, 6, 5, 4), (1, 4, 3, 13, 300), (2, 16, 9, 6, 17)]


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("N,C,O,H,W", SHAPES)
def test_direct_kernels_equal_their_twins(dtype, tol, N, C, O, H, W, rng):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w, b = rng.standard_normal((O, C, 3, 3)).astype(dtype), rng.standard_normal(O).astype(dtype)
    g = rng.standard_normal((N, O, H, W)).astype(dtype)
    xp = np.full((N, C, H + 3, W + 2), np.nan, dtype)             # every element must be written
    split(KD.pad, N * C, x, xp)
    assert (xp == KD.pad_ref(x)).all()
    y = _run_conv(xp, w, b, (N, O, H, W))
    assert y.dtype == dtype and rel(y, KD.conv3x3_ref(x, w, b)) < tol
    gp = KD.pad_ref(g)
    dw = np.full(w.shape, np.nan, dtype)
    split(KD.weight_grad, (O + 1) // 2, xp.reshape(N, C, -1), gp.reshape(N, O, -1), W + 2, dw)
    assert dw.dtype == dtype and rel(dw, KD.weight_grad_ref(x, g)) < tol
    dx = _run_conv(gp, KD.flip_weight(w), np.zeros(C, dtype), (N, C, H, W))   # the input gradient's form
    assert rel(dx, reference.conv2d_backward(g, reference.conv2d_forward(x, w, b, 1, 1)[1])[0]) < tol


def test_direct_twins_are_the_convolution(rng):
    """The twins themselves against the reference backend's convolution (a different formulation)."""
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, cache = reference.conv2d_forward(x, w, b, 1, 1)
    g = rng.standard_normal(y.shape)
    assert rel(KD.conv3x3_ref(x, w, b), y) < 1e-13
    assert rel(KD.weight_grad_ref(x, g), reference.conv2d_backward(g, cache)[1]) < 1e-13


@pytest.mark.parametrize("shape,O", [((2, 3, 8, 10), 4), ((1, 2, 9, 7), 5), ((3, 16, 5, 33), 7), ((1, 1, 300, 2), 2)])
def test_direct_conv_equals_the_reference_conv(shape, O, rng):
    """float64 (where the dispatcher would not choose it): output, input, weight and bias gradients equal the
    reference backend's to rounding; inputs untouched; a frozen layer gets the same dx and no weight grads."""
    x, w, b = rng.standard_normal(shape), rng.standard_normal((O, shape[1], 3, 3)), rng.standard_normal(O)
    y, cache = fast.direct.forward(x, w, b)
    yr, cr = reference.conv2d_forward(x, w, b, 1, 1)
    g = rng.standard_normal(y.shape)
    g0, x0, w0 = g.copy(), x.copy(), w.copy()
    grads, grads_r = cache.backward(g), reference.conv2d_backward(g, cr)
    assert y.dtype == yr.dtype and rel(y, yr) < 1e-13
    for a, r in zip(grads, grads_r):
        assert a.shape == r.shape and a.dtype == r.dtype and rel(a, r) < 1e-13
    assert (g == g0).all() and (x == x0).all() and (w == w0).all()
    dx, dw, db = cache.backward(g, weight_grad=False)
    assert (dx == grads[0]).all() and dw is None and db is None
    y_nobias, c_nobias = fast.direct.forward(x, w, None)
    assert rel(y_nobias, yr - b[None, :, None, None]) < 1e-13 and c_nobias.backward(g)[2] is None


def test_direct_gradients_gradcheck(rng):
    """The direct backward against central differences of its own forward, float64."""
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    cache = {}

    def forward(x_, w_, b_):
        out, cache["c"] = fast.direct.forward(x_, w_, b_)
        return out

    r = npunet.gradcheck_fn(forward, lambda g: cache["c"].backward(g), (x, w, b))
    assert r.max_rel_error <= 1e-6, str(r)


def test_direct_float32_error_bound(rng):
    """float32 against the float64 reference, on a classroom-U-Net-like layer (He-initialised 16 -> 16,
    ReLU-like input, batch 4 at 64^2): max |error| / max |y| for y, dx, dW and db within 2e-6
    (measured 1.7-2.0e-7 for y and dx, 1.4-1.5e-7 for dW, 4-6e-8 for db: as im2col's 2-4e-7)."""
    x = np.maximum(rng.standard_normal((4, 16, 64, 64)), 0)
    w = rng.standard_normal((16, 16, 3, 3)) * np.sqrt(2 / (16 * 9))
    b = rng.standard_normal(16) * 0.1
    y64, c64 = reference.conv2d_forward(x, w, b, 1, 1)
    g = rng.standard_normal(y64.shape)
    d64 = reference.conv2d_backward(g, c64)
    f = np.float32
    y32, c32 = fast.conv2d_forward(x.astype(f), w.astype(f), b.astype(f), 1, 1)
    assert isinstance(c32, fast.direct.DirectCache)
    d32 = fast.conv2d_backward(g.astype(f), c32)
    assert y32.dtype == f and all(d.dtype == f for d in d32)
    for a, r in zip((y32,) + tuple(d32), (y64,) + tuple(d64)):
        assert rel(a, r) < 2e-6


def test_direct_dispatch_and_option():
    """float32 3x3 stride-1 padding-1 convs with C_in x C_out <= direct_max_pairs or C_out <= direct_max_out
    run direct; float64,
    padding 0 or 2, strides, groups, other kernels, more channel pairs and direct=False do not."""
    def path(shape, wshape, dtype=np.float32, **kw):
        x, w = np.ones(shape, dtype), np.ones(wshape, dtype)
        return type(fast.conv2d_forward(x, w, None, **kw)[1]).__name__
    assert path((2, 16, 32, 32), (32, 16, 3, 3), padding=1) == "DirectCache"
    assert path((2, 32, 32, 32), (16, 32, 3, 3), padding=1) == "DirectCache"
    assert path((1, 1, 40, 40), (64, 1, 3, 3), padding=1) == "DirectCache"
    assert path((2, 16, 32, 32), (16, 16, 3, 3), np.float64, padding=1) != "DirectCache"
    assert path((2, 32, 32, 32), (17, 32, 3, 3), padding=1) == "WinogradCache"
    assert path((2, 256, 16, 16), (16, 256, 3, 3), padding=1) == "DirectCache"      # <= direct_max_out outputs
    assert path((2, 256, 16, 16), (17, 256, 3, 3), padding=1) == "WinogradCache"
    assert path((2, 16, 32, 32), (16, 16, 3, 3), padding=0) == "WinogradCache"
    assert path((2, 16, 32, 32), (16, 16, 3, 3), padding=2) == "WinogradCache"
    assert path((2, 16, 32, 32), (16, 16, 3, 3), padding=1, stride=2) != "DirectCache"
    assert path((2, 16, 32, 32), (16, 8, 3, 3), padding=1, groups=2) != "DirectCache"
    assert path((2, 16, 32, 32), (16, 16, 5, 5), padding=1) != "DirectCache"
    with npunet.fast_options(direct=False):
        assert path((2, 16, 32, 32), (16, 16, 3, 3), padding=1) == "WinogradCache"
    with npunet.fast_options(direct_max_pairs=1024):
        assert path((2, 32, 32, 32), (32, 32, 3, 3), padding=1) == "DirectCache"
    with npunet.fast_options(direct_max_out=0):
        assert path((2, 256, 16, 16), (16, 256, 3, 3), padding=1) == "WinogradCache"
        assert path((2, 32, 32, 32), (16, 32, 3, 3), padding=1) == "DirectCache"    # 512 pairs still
    with pytest.raises(ValueError, match="direct must be True or False, got 1"):
        with npunet.fast_options(direct=1):
            pass
    with pytest.raises(ValueError, match="direct_max_pairs must be a count >= 0, got -1"):
        with npunet.fast_options(direct_max_pairs=-1):
            pass
    with pytest.raises(ValueError, match="direct_max_out must be a count >= 0, got 1.5"):
        with npunet.fast_options(direct_max_out=1.5):
            pass


def test_direct_in_a_layer_matches_the_reference_backend(rng):
    """nn.Conv2d(8, 12, 3, padding=1) in float32 on the fast backend (the direct path) against the same layer
    on the reference backend: output and all gradients within the float32 bound."""
    layer = npunet.nn.Conv2d(8, 12, 3, padding=1)
    x = rng.standard_normal((3, 8, 20, 24)).astype(np.float32)
    out = {}
    for name in ("fast", "reference"):
        with npunet.backend(name):
            layer.zero_grad()
            y = layer(x)
            g = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
            out[name] = (y, layer.backward(g), layer.weight.grad.copy(), layer.bias.grad.copy())
    for a, r in zip(out["fast"], out["reference"]):
        assert a.dtype == np.float32 and rel(a, r) < 2e-6
