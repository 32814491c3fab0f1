"""The depthwise kernels (npunet/kernels/depthwise.py) against their NumPy twins, float32 and float64,
forward and backward; the twins against the definition in the module's docstring."""
import numpy as np
import pytest

from npunet import kernels as K

# (N, C, Hp, Wp, kh, kw, sh, sw): Hp, Wp the already padded input's size
SHAPES = [
    (2, 3, 9, 8, 3, 3, 1, 1),
    (1, 4, 11, 10, 3, 3, 2, 2),      # stride 2 (EfficientNet's down-sampling blocks)
    (2, 2, 12, 9, 5, 5, 2, 1),       # 5x5 kernel, unequal strides
    (3, 5, 7, 6, 3, 2, 1, 2),        # non-square kernel
]


def _out_hw(Hp, Wp, kh, kw, sh, sw):
    return (Hp - kh) // sh + 1, (Wp - kw) // sw + 1


def _definition(x, w, sh, sw):
    """out[n, c, i, j] = sum_{u, v} x[n, c, i*sh + u, j*sw + v] * w[c, u, v], as plain loops."""
    N, C = x.shape[:2]
    kh, kw = w.shape[1:]
    Ho, Wo = _out_hw(x.shape[2], x.shape[3], kh, kw, sh, sw)
    out = np.zeros((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, c, i, j] = sum(x[n, c, i * sh + u, j * sw + v] * w[c, u, v]
                                          for u in range(kh) for v in range(kw))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,Hp,Wp,kh,kw,sh,sw", SHAPES)
def test_depthwise_kernels_equal_their_twins(dtype, N, C, Hp, Wp, kh, kw, sh, sw, rng):
    x = rng.standard_normal((N, C, Hp, Wp)).astype(dtype)
    w = rng.standard_normal((C, kh, kw)).astype(dtype)
    Ho, Wo = _out_hw(Hp, Wp, kh, kw, sh, sw)
    x0, w0 = x.copy(), w.copy()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)

    out = np.full((N, C, Ho, Wo), np.nan, dtype=dtype)       # the kernel must write every element
    K.depthwise_fwd(x, w, sh, sw, out)
    ref = K.depthwise_fwd_ref(x, w, sh, sw, (Ho, Wo))
    assert ref.dtype == dtype
    np.testing.assert_allclose(out, ref, **tol)

    d = rng.standard_normal((N, C, Ho, Wo)).astype(dtype)
    d0 = d.copy()
    dx = np.zeros_like(x)
    dw = np.zeros(w.shape, dtype=np.float64)                  # as the fast backend calls it: dw summed in float64
    K.depthwise_bwd(d, x, w, sh, sw, dx, dw)
    rdx, rdw = K.depthwise_bwd_ref(d, x, w, sh, sw)
    assert rdx.dtype == dtype and rdw.dtype == dtype
    np.testing.assert_allclose(dx, rdx, **tol)
    np.testing.assert_allclose(dw, rdw, **tol)
    for a, b in ((x, x0), (w, w0), (d, d0)):                  # inputs and the incoming gradient untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("N,C,Hp,Wp,kh,kw,sh,sw", SHAPES[:3])
def test_depthwise_twins_follow_the_definition_and_are_adjoint(N, C, Hp, Wp, kh, kw, sh, sw, rng):
    x = rng.standard_normal((N, C, Hp, Wp))
    w = rng.standard_normal((C, kh, kw))
    Ho, Wo = _out_hw(Hp, Wp, kh, kw, sh, sw)
    out = K.depthwise_fwd_ref(x, w, sh, sw, (Ho, Wo))
    np.testing.assert_allclose(out, _definition(x, w, sh, sw), rtol=1e-12, atol=1e-12)
    # the backward twin is the forward's adjoint: <d, f(x, w)> is linear in x and in w separately
    d = rng.standard_normal(out.shape)
    dx, dw = K.depthwise_bwd_ref(d, x, w, sh, sw)
    assert np.isclose(np.sum(d * out), np.sum(x * dx), rtol=1e-12)
    assert np.isclose(np.sum(d * out), np.sum(w * dw), rtol=1e-12)
