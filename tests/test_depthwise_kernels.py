"""The depthwise kernels (npunet/kernels/depthwise.py) against their NumPy twins, float32 and float64,
forward and backward; the twins against the definition in the module's docstring."""
import numpy as np
import pytest

from npunet import kernels as K

# (N, C, H, W, kh, kw, sh, sw, pt, pl, pb, pr): the input's size, and the zero rows above (pt) and
# below (pb), the zero columns left (pl) and right (pr); a negative pb or pr drops input rows or
# columns the output never reaches
SHAPES = [
    (2, 3, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1),       # the common 3x3 "same" convolution
    (1, 4, 11, 10, 3, 3, 2, 2, 1, 1, 1, 1),     # stride 2 (MobileNetV2's down-sampling blocks)
    (2, 2, 12, 9, 5, 5, 2, 1, 2, 2, 2, 2),      # 5x5 kernel, unequal strides
    (3, 5, 7, 6, 3, 2, 1, 2, 0, 1, 0, 0),       # non-square kernel, padding on one side only
    (2, 3, 10, 9, 3, 3, 2, 2, 0, 0, 0, -1),     # unpadded stride 2 whose last column is never read
    (1, 2, 8, 11, 5, 5, 2, 2, 1, 1, 2, 2),      # TensorFlow's "same": more zeros below and right
    (1, 3, 6, 6, 3, 3, 3, 3, 1, 1, 1, 1),       # a stride other than 1 and 2
    (2, 3, 5, 7, 1, 1, 1, 1, 0, 0, 0, 0),       # 1x1
    (1, 2, 5, 6, 3, 3, 1, 1, 3, 0, 3, 1),       # stride 1, padding past the kernel: the phase-split dx
]


def _out_hw(H, W, kh, kw, sh, sw, pt, pl, pb, pr):
    return (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1


def _definition(x, w, sh, sw, pt, pl, out_hw):
    """out[n, c, i, j] = sum_{u, v} xp[n, c, i*sh + u, j*sw + v] * w[c, u, v], as plain loops over
    x itself: a tap that falls outside x reads zero."""
    N, C, H, W = x.shape
    kh, kw = w.shape[1:]
    Ho, Wo = out_hw
    out = np.zeros((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, c, i, j] = sum(x[n, c, r, q] * w[c, u, v] for u in range(kh) for v in range(kw)
                                          for r, q in [(i * sh + u - pt, j * sw + v - pl)]
                                          if 0 <= r < H and 0 <= q < W)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,kh,kw,sh,sw,pt,pl,pb,pr", SHAPES)
def test_depthwise_kernels_equal_their_twins(dtype, N, C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, rng):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, kh, kw)).astype(dtype)
    Ho, Wo = _out_hw(H, W, kh, kw, sh, sw, pt, pl, pb, pr)
    x0, w0 = x.copy(), w.copy()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)

    out = np.full((N, C, Ho, Wo), np.nan, dtype=dtype)       # the kernel must write every element
    K.depthwise_fwd(x, w, sh, sw, pt, pl, out)
    ref = K.depthwise_fwd_ref(x, w, sh, sw, pt, pl, (Ho, Wo))
    assert ref.dtype == dtype
    np.testing.assert_allclose(out, ref, **tol)

    d = rng.standard_normal((N, C, Ho, Wo)).astype(dtype)
    d0 = d.copy()
    dx = np.full_like(x, np.nan)                              # every element written, unread ones as zero
    dw = np.zeros(w.shape, dtype=np.float64)                  # as the fast backend calls it: dw summed in float64
    K.depthwise_bwd(d, x, w, sh, sw, pt, pl, dx, dw)
    rdx, rdw = K.depthwise_bwd_ref(d, x, w, sh, sw, pt, pl)
    assert rdx.dtype == dtype and rdw.dtype == dtype
    np.testing.assert_allclose(dx, rdx, **tol)
    np.testing.assert_allclose(dw, rdw, **tol)
    for a, b in ((x, x0), (w, w0), (d, d0)):                  # inputs and the incoming gradient untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("N,C,H,W,kh,kw,sh,sw,pt,pl,pb,pr", SHAPES)
def test_depthwise_twins_follow_the_definition_and_are_adjoint(N, C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, rng):
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C, kh, kw))
    Ho, Wo = _out_hw(H, W, kh, kw, sh, sw, pt, pl, pb, pr)
    out = K.depthwise_fwd_ref(x, w, sh, sw, pt, pl, (Ho, Wo))
    np.testing.assert_allclose(out, _definition(x, w, sh, sw, pt, pl, (Ho, Wo)), rtol=1e-12, atol=1e-12)
    # the backward twin is the forward's adjoint: <d, f(x, w)> is linear in x and in w separately
    d = rng.standard_normal(out.shape)
    dx, dw = K.depthwise_bwd_ref(d, x, w, sh, sw, pt, pl)
    assert np.isclose(np.sum(d * out), np.sum(x * dx), rtol=1e-12)
    assert np.isclose(np.sum(d * out), np.sum(w * dw), rtol=1e-12)


def test_depthwise_inf_in_the_input_reaches_only_the_taps_that_read_it():
    """An Inf in x makes Inf/NaN in the weight gradient of exactly the taps that read it, as in the
    reference: no product is formed with a pixel a tap never read."""
    from npunet.backends import fast, reference
    x = np.ones((1, 2, 4, 4), np.float32)
    x[0, 0, 1, 0] = np.inf
    w, d = np.ones((2, 1, 3, 3), np.float32), np.ones((1, 2, 4, 4), np.float32)
    grads = []
    for be in (fast, reference):
        out, cache = be.conv2d_forward(x, w, None, 1, 1, 2)
        grads.append(be.conv2d_backward(d, cache))
    for a, r in zip(*grads):
        if r is not None:
            np.testing.assert_array_equal(a, r)          # equal, NaN and Inf in the same places
    assert np.isfinite(grads[0][1][0, 0, :, 2]).all()   # the right column of taps never met the Inf


def test_depthwise_frozen_layer_skips_the_weight_gradient_and_empty_maps_work(rng, monkeypatch):
    """weight_grad=False runs no weight-gradient pass; an output of size 0 (stride past the input)
    gives empty outputs and a zero input gradient, as the reference."""
    from npunet.backends import fast, reference
    from npunet.kernels import depthwise
    ran = []
    real = depthwise.split
    monkeypatch.setattr(depthwise, "split", lambda f, n, *a, **k: (ran.append(f.__name__), real(f, n, *a, **k)))
    x, w = rng.standard_normal((2, 3, 6, 6)).astype(np.float32), rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    out, cache = fast.conv2d_forward(x, w, None, 2, 1, 3)
    dx, dw, db = fast.conv2d_backward(np.ones_like(out), cache, weight_grad=False)
    assert dw is None and db is None and "_depthwise_dw_channels" not in ran
    ref_out, ref_cache = reference.conv2d_forward(x, w, None, 2, 1, 3)
    np.testing.assert_allclose(dx, reference.conv2d_backward(np.ones_like(ref_out), ref_cache)[0], rtol=1e-5, atol=1e-5)
    x1 = np.ones((1, 2, 1, 1), np.float32)
    for be in (fast, reference):
        o, c = be.conv2d_forward(x1, np.ones((2, 1, 3, 3), np.float32), None, 4, 0, 2)
        assert o.shape == (1, 2, 0, 0)
        g = be.conv2d_backward(o, c)
        assert g[0].shape == x1.shape and not g[0].any() and not g[1].any()
