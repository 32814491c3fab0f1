"""Every Numba kernel against its NumPy/loop twin."""
import numpy as np
import pytest

from npunet import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,kh,kw,sh,sw,ph,pw,n0,n1,r0,r1", [
    (2, 3, 7, 5, 3, 3, 1, 1, 1, 1, 0, 2, 0, 7),
    (2, 2, 8, 9, 3, 2, 2, 2, 1, 0, 1, 2, 1, 3),
    (3, 1, 6, 6, 2, 2, 2, 2, 0, 0, 0, 3, 0, 3),
    (1, 4, 9, 7, 5, 3, 1, 2, 2, 1, 0, 1, 2, 6),
])
def test_im2col_col2im_match_twins(dtype, N, C, H, W, kh, kw, sh, sw, ph, pw, n0, n1, r0, r1, rng):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    Wo = (W + 2 * pw - kw) // sw + 1
    cols = np.full((C * kh * kw, (n1 - n0) * (r1 - r0) * Wo), np.nan, dtype)
    K.im2col(x, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, Wo, cols)
    ref = K.im2col_ref(x, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, Wo)
    np.testing.assert_array_equal(cols, ref)
    d = rng.standard_normal(cols.shape).astype(dtype)
    dx = np.zeros_like(x)
    K.col2im(d, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, Wo, dx)
    np.testing.assert_allclose(dx, K.col2im_ref(d, x.shape, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, Wo),
                               rtol=1e-5, atol=1e-5)
    # adjointness: <im2col(x), d> == <x, col2im(d)>
    assert np.isclose(np.sum(cols.astype(np.float64) * d), np.sum(x.astype(np.float64) * dx), rtol=1e-4)


@pytest.mark.parametrize("N,C,H,W,kh,kw,n0,n1,r0,r1", [
    (2, 3, 7, 6, 3, 3, 0, 2, 0, 5), (1, 2, 9, 8, 3, 2, 0, 1, 2, 5), (3, 2, 5, 5, 1, 1, 1, 3, 0, 5)])
def test_wide_im2col_equals_generic_on_valid_columns(N, C, H, W, kh, kw, n0, n1, r0, r1, rng):
    x = rng.standard_normal((N, C, H, W))
    Wo = W - kw + 1
    wide = np.empty((C * kh * kw, (n1 - n0) * (r1 - r0) * W))
    K.im2col_wide(x, n0, n1, r0, r1, kh, kw, wide)
    ref = K.im2col_ref(x, n0, n1, r0, r1, kh, kw, 1, 1, 0, 0, Wo)
    w4 = wide.reshape(-1, n1 - n0, r1 - r0, W)[..., :Wo].reshape(ref.shape)
    np.testing.assert_array_equal(w4, ref)
    # col2im_wide with zero junk columns equals the generic adjoint
    d = rng.standard_normal((C * kh * kw, n1 - n0, r1 - r0, W))
    d[..., Wo:] = 0
    dx = np.zeros_like(x)
    K.col2im_wide(d.reshape(wide.shape), n0, n1, r0, r1, kh, kw, dx)
    ref_dx = K.col2im_ref(d[..., :Wo].reshape(ref.shape), x.shape, n0, n1, r0, r1, kh, kw, 1, 1, 0, 0, Wo)
    np.testing.assert_allclose(dx, ref_dx, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H,W,k,s,p,adaptive,out", [(7, 6, 2, 2, 0, False, None), (9, 8, 3, 2, 1, False, None),
                                                    (7, 5, None, None, 0, True, (3, 2)), (5, 5, None, None, 0, True, (1, 1))])
def test_maxpool_matches_twin(dtype, H, W, k, s, p, adaptive, out, rng):
    x = rng.standard_normal((2, 3, H, W)).astype(dtype)
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum must win in both
    if adaptive:
        hs, he = K.pool_windows(H, out[0], adaptive=True)
        ws, we = K.pool_windows(W, out[1], adaptive=True)
    else:
        Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        hs, he = K.pool_windows(H, Ho, k, s, p)
        ws, we = K.pool_windows(W, Wo, k, s, p)
    o = np.empty((2, 3, len(hs), len(ws)), dtype)
    a = np.empty(o.shape, np.int32)
    K.maxpool_fwd(0, x.shape[0] * x.shape[1], x, hs, he, ws, we, o, a)
    ro, ra = K.maxpool_fwd_ref(x, hs, he, ws, we)
    np.testing.assert_array_equal(o, ro)
    np.testing.assert_array_equal(a, ra)
    if (k, s, p) == (2, 2, 0):  # the unrolled 2x2 kernel gives the same
        o3, a3 = np.empty_like(o), np.empty_like(a)
        K.maxpool2x2_fwd(0, x.shape[0] * x.shape[1], x, o3, a3)
        np.testing.assert_array_equal(o3, ro)
        np.testing.assert_array_equal(a3, ra)
    d = rng.standard_normal(o.shape).astype(dtype)
    dx = np.zeros_like(x)
    K.maxpool_bwd(0, 1, d, a, dx)                              # plane 0, then the rest
    K.maxpool_bwd(1, d.shape[0] * d.shape[1], d, a, dx)
    np.testing.assert_allclose(dx, K.maxpool_bwd_ref(d, a, x.shape), rtol=1e-6)


@pytest.mark.parametrize("windows", ["general", "2x2"])
def test_maxpool_nan_wins_like_pytorch(windows):
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    o, a = np.empty((1, 1, 2, 2)), np.empty((1, 1, 2, 2), np.int32)
    if windows == "2x2":
        K.maxpool2x2_fwd(0, x.shape[0] * x.shape[1], x, o, a)
    else:
        hs, he = K.pool_windows(4, 2, 2, 2, 0)
        K.maxpool_fwd(0, x.shape[0] * x.shape[1], x, hs, he, hs, he, o, a)
    assert np.isnan(o[0, 0, 0, 0]) and a[0, 0, 0, 0] == 4 and o[0, 0, 1, 1] == 15


def test_adaptive_windows_follow_pytorch_formula():
    hs, he = K.pool_windows(7, 3, adaptive=True)
    assert hs.tolist() == [0, 2, 4] and he.tolist() == [3, 5, 7]  # floor(o*7/3), ceil((o+1)*7/3)


@pytest.mark.parametrize("mode,ac,Hin,Hout,scale", [("bilinear", True, 4, 9, None), ("bilinear", False, 5, 10, 2.0),
                                                      ("bilinear", False, 6, 4, None), ("nearest", False, 3, 7, None)])
def test_interp_matches_twin(mode, ac, Hin, Hout, scale, rng):
    x = rng.standard_normal((2, 3, Hin, Hin + 1))
    iy = K.interp_indices(Hin, Hout, mode, ac, scale)
    ix = K.interp_indices(Hin + 1, Hout + 2, mode, ac, None)
    out = np.full((2, 3, Hout, Hout + 2), np.nan)
    K.interp_fwd(0, 4, x, *iy, *ix, out)                  # planes 0..3 of 6, then the rest
    K.interp_fwd(4, 6, x, *iy, *ix, out)
    np.testing.assert_allclose(out, K.interp_fwd_ref(x, *iy, *ix), atol=1e-12)
    d = rng.standard_normal(out.shape)
    dx = np.zeros_like(x)
    K.interp_bwd(0, 1, d, *iy, *ix, dx)
    K.interp_bwd(1, 6, d, *iy, *ix, dx)
    np.testing.assert_allclose(dx, K.interp_bwd_ref(d, *iy, *ix, x.shape), atol=1e-12)
    assert np.sum(d * out) == pytest.approx(np.sum(dx * x), rel=1e-12)  # the backward is the forward's adjoint


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bn_kernels_match_twins(dtype, rng):
    x = (rng.standard_normal((3, 4, 25)) * 3 + 5).astype(dtype)
    mean, var = np.empty(4), np.empty(4)
    K.bn_stats(0, x.shape[1], x, mean, var)
    rm, rv = K.bn_stats_ref(x)
    np.testing.assert_allclose(mean, rm, rtol=1e-6)
    np.testing.assert_allclose(var, rv, rtol=1e-5)
    invstd = 1 / np.sqrt(var + 1e-5)
    gamma = rng.standard_normal(4)
    d = rng.standard_normal(x.shape).astype(dtype)
    dx, dg, db = np.empty_like(x), np.empty(4), np.empty(4)
    K.bn_backward(0, x.shape[1], d, x, mean, invstd, gamma, x, False, dx, dg, db)
    scale, shift = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    out = np.empty_like(x)
    K.bn_apply(0, x.shape[0] * x.shape[1], x, scale, shift, False, out)
    np.testing.assert_allclose(out, K.bn_apply_ref(x, scale, shift), rtol=1e-6, atol=1e-6)
    rdx, rdg, rdb = K.bn_backward_ref(d, x, mean, invstd, gamma)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(dx, rdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dg, rdg, rtol=tol)
    np.testing.assert_allclose(db, rdb, rtol=tol)
    K.bn_apply(0, x.shape[0] * x.shape[1], x, scale, shift, True, out)                        # fused with the ReLU after it
    np.testing.assert_allclose(out, K.bn_apply_ref(x, scale, shift, relu=True), rtol=1e-6, atol=1e-6)
    assert (out == 0).any() and (out > 0).any()
    K.bn_backward(0, x.shape[1], d, x, mean, invstd, gamma, out, True, dx, dg, db)
    rdx, rdg, rdb = K.bn_backward_ref(d, x, mean, invstd, gamma, out, relu=True)
    np.testing.assert_allclose(dx, rdx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dg, rdg, rtol=tol)
    np.testing.assert_allclose(db, rdb, rtol=tol)


def test_all_finite_matches_twin(rng):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    assert K.all_finite(x) and K.all_finite_ref(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 4, 6] = bad
        assert not K.all_finite(y) and not K.all_finite_ref(y)


def test_warp_nearest_and_rasterise_match_twins(rng):
    from npunet.data import augment as A, synthetic as S
    lab = rng.integers(0, 5, (2, 11, 13)).astype(np.float32)
    sy, sx = rng.uniform(-4, 15, (11, 13)), rng.uniform(-4, 17, (11, 13))
    out = np.empty_like(lab)
    A.warp_nearest(0, lab.shape[1], lab, sy, sx, out)
    np.testing.assert_array_equal(out, A.warp_nearest_ref(lab, sy, sx))
    K_ = 6
    args = (40, 50, rng.uniform(0, 40, K_), rng.uniform(0, 50, K_), rng.uniform(4, 9, K_), rng.uniform(4, 9, K_),
            rng.uniform(0, np.pi, K_), rng.uniform(0, 0.08, (K_, 3)), rng.uniform(0, 6, (K_, 3)))
    lab1, d1 = S._rasterise(*args)
    lab2, d2 = S._rasterise_ref(*args)
    np.testing.assert_array_equal(lab1, lab2)
    np.testing.assert_allclose(np.where(np.isinf(d1), -1, d1), np.where(np.isinf(d2), -1, d2), atol=1e-12)


# ---------------------------------------------------------------- every kernel has its twin

def test_every_numba_kernel_has_a_numpy_twin():
    import importlib
    import pkgutil
    from numba.core.registry import CPUDispatcher
    kernels = [n for n in K.__all__ if isinstance(getattr(K, n), CPUDispatcher)]
    assert len(kernels) >= 12
    missing = [n for n in kernels if not hasattr(K, n + "_ref")]
    for info in pkgutil.iter_modules(K.__path__):   # kernels a module keeps to itself too
        mod = importlib.import_module(f"npunet.kernels.{info.name}")
        missing += [f"{info.name}.{n}" for n, f in vars(mod).items() if isinstance(f, CPUDispatcher)
                    and not n.startswith("_") and not hasattr(mod, n + "_ref")]
    assert not missing, f"kernels without a NumPy twin: {missing}"


@pytest.mark.parametrize("N,C,H,W,kh,kw,n0,n1,r0,r1", [
    (2, 3, 7, 6, 3, 3, 0, 2, 0, 5), (1, 2, 9, 8, 3, 2, 0, 1, 2, 5), (3, 2, 5, 5, 1, 1, 1, 3, 0, 5)])
def test_wide_kernels_equal_their_twins(N, C, H, W, kh, kw, n0, n1, r0, r1, rng):
    x = rng.standard_normal((N, C, H, W))
    wide = np.empty((C * kh * kw, (n1 - n0) * (r1 - r0) * W))
    K.im2col_wide(x, n0, n1, r0, r1, kh, kw, wide)
    np.testing.assert_array_equal(wide, K.im2col_wide_ref(x, n0, n1, r0, r1, kh, kw))
    d = rng.standard_normal(wide.shape)
    dx = np.zeros_like(x)
    K.col2im_wide(d, n0, n1, r0, r1, kh, kw, dx)
    np.testing.assert_allclose(dx, K.col2im_wide_ref(d, x.shape, n0, n1, r0, r1, kh, kw), atol=1e-12)
    # the twins are each other's adjoint: <im2col(x), d> == <x, col2im(d)>
    assert np.isclose(np.sum(K.im2col_wide_ref(x, n0, n1, r0, r1, kh, kw) * d),
                      np.sum(x * K.col2im_wide_ref(d, x.shape, n0, n1, r0, r1, kh, kw)))


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 9)])
def test_maxpool2x2_equals_its_twin(shape, rng):
    x = rng.standard_normal(shape)
    o = np.empty(shape[:2] + (shape[2] // 2, shape[3] // 2))
    a = np.empty(o.shape, np.int32)
    K.maxpool2x2_fwd(0, x.shape[0] * x.shape[1], x, o, a)
    ro, ra = K.maxpool2x2_fwd_ref(x)
    np.testing.assert_array_equal(o, ro)
    np.testing.assert_array_equal(a, ra)


def test_two_nearest_equals_its_twin(rng):
    lab = np.zeros((20, 23), np.int32)
    for k, (h, w) in enumerate([(3, 4), (10, 15), (16, 5), (5, 19)], 1):
        lab[h:h + 3, w:w + 4] = k
    d1, d2 = K.two_nearest(lab, 4)
    r1, r2 = K.two_nearest_ref(lab, 4)
    np.testing.assert_allclose(d1, r1)
    np.testing.assert_allclose(d2, r2)
    assert (d2 >= d1).all() and (d1[lab > 0] == 0).all()


# ---------------------------------------------------------------- Winograd F(2x2, 3x3)

WINO_BANDS = [  # N, C, H, W, ph, pw, n0, n1, ty0, ty1 (ty1 clipped to the tile rows)
    (2, 3, 8, 10, 1, 1, 0, 2, 0, 4), (3, 2, 9, 7, 0, 0, 1, 3, 1, 3), (1, 4, 6, 11, 2, 1, 0, 1, 2, 4),
    (2, 1, 5, 5, 1, 0, 1, 2, 0, 3), (1, 2, 14, 13, 1, 1, 0, 1, 1, 4)]


def _wino(m):
    from npunet.kernels import winograd as KW
    sfx = "" if m == 2 else "_4"
    return {n: getattr(KW, n.replace("transform", "transform" + sfx)) for n in (
        "weight_transform", "weight_transform_adjoint", "input_transform", "input_transform_adjoint",
        "output_transform", "output_transform_adjoint")} | {
        n + "_ref": getattr(KW, n.replace("transform", "transform" + sfx) + "_ref") for n in (
            "weight_transform", "weight_transform_adjoint", "input_transform", "input_transform_adjoint",
            "output_transform", "output_transform_adjoint")}


def _wino_tiles(H, W, ph, pw, m):
    return -(-(H + 2 * ph - 2) // m), -(-(W + 2 * pw - 2) // m)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,ph,pw,n0,n1,ty0,ty1", WINO_BANDS)
def test_winograd_kernels_equal_their_twins(m, dtype, N, C, H, W, ph, pw, n0, n1, ty0, ty1, rng):
    k = _wino(m)
    TH, TW = _wino_tiles(H, W, ph, pw, m)
    ty1 = min(ty1, TH)
    ty0 = min(ty0, ty1 - 1)
    P = (m + 2) ** 2
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    T, O = (n1 - n0) * (ty1 - ty0) * TW, 3
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    scale = 1.0 if m == 2 else 60.0                                   # F(4x4)'s constants grow values
    tol = 1e-13 * scale if dtype == np.float64 else 3e-6 * scale
    V = np.empty((P, C, T), dtype)
    k["input_transform"](0, C, x, ph, pw, n0, n1, ty0, ty1, TW, V)
    np.testing.assert_allclose(V, k["input_transform_ref"](x, ph, pw, n0, n1, ty0, ty1, TW), atol=tol)
    dV = rng.standard_normal(V.shape).astype(dtype)
    dx = np.zeros_like(x)
    k["input_transform_adjoint"](0, C, dV, ph, pw, n0, n1, ty0, ty1, TW, dx)
    np.testing.assert_allclose(dx, k["input_transform_adjoint_ref"](dV, x.shape, ph, pw, n0, n1, ty0, ty1, TW), atol=tol)
    M, bias = rng.standard_normal((P, O, T)).astype(dtype), rng.standard_normal(O).astype(dtype)
    out = np.full((N, O, Ho, Wo), 7.0, dtype)
    k["output_transform"](0, O, M, n0, n1, ty0, ty1, bias, out)
    ref = k["output_transform_ref"](M, out.shape, n0, n1, ty0, ty1, bias)
    np.testing.assert_allclose(out[n0:n1, :, m * ty0:m * ty0 + ref.shape[2]], ref, atol=tol)
    assert (out[:n0] == 7).all() and (out[n1:] == 7).all()           # outside the band: untouched
    dout = rng.standard_normal(out.shape).astype(dtype)
    dM = np.empty_like(M)
    k["output_transform_adjoint"](0, O, dout, n0, n1, ty0, ty1, dM)
    np.testing.assert_allclose(dM, k["output_transform_adjoint_ref"](dout, n0, n1, ty0, ty1), atol=tol)
    w = rng.standard_normal((O, C, 3, 3)).astype(dtype)
    U = np.empty((P, O, C), dtype)
    k["weight_transform"](0, O, w, U)
    np.testing.assert_allclose(U, k["weight_transform_ref"](w), atol=tol)
    dU, dw = rng.standard_normal(U.shape).astype(dtype), np.empty_like(w)
    k["weight_transform_adjoint"](0, O, dU, dw)
    np.testing.assert_allclose(dw, k["weight_transform_adjoint_ref"](dU), atol=tol)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("N,C,H,W,ph,pw,n0,n1,ty0,ty1", WINO_BANDS)
def test_winograd_backward_kernels_are_the_adjoints(m, N, C, H, W, ph, pw, n0, n1, ty0, ty1, rng):
    """<L a, b> = <a, L^T b> for the input, output and weight transforms (float64)."""
    k = _wino(m)
    TH, TW = _wino_tiles(H, W, ph, pw, m)
    ty1 = min(ty1, TH)
    ty0 = min(ty0, ty1 - 1)
    P, O = (m + 2) ** 2, 2
    T = (n1 - n0) * (ty1 - ty0) * TW
    x, dV = rng.standard_normal((N, C, H, W)), rng.standard_normal((P, C, T))
    V, dx = np.empty((P, C, T)), np.zeros((N, C, H, W))
    k["input_transform"](0, C, x, ph, pw, n0, n1, ty0, ty1, TW, V)
    k["input_transform_adjoint"](0, C, dV, ph, pw, n0, n1, ty0, ty1, TW, dx)
    assert abs((V * dV).sum() - (x * dx).sum()) < 1e-11 * np.abs(V * dV).sum()
    M, dout = rng.standard_normal((P, O, T)), rng.standard_normal((N, O, H + 2 * ph - 2, W + 2 * pw - 2))
    out, dM = np.zeros(dout.shape), np.empty((P, O, T))
    k["output_transform"](0, O, M, n0, n1, ty0, ty1, np.zeros(O), out)
    k["output_transform_adjoint"](0, O, dout, n0, n1, ty0, ty1, dM)
    assert abs((out * dout).sum() - (M * dM).sum()) < 1e-11 * np.abs(M * dM).sum()
    w, dU = rng.standard_normal((O, C, 3, 3)), rng.standard_normal((P, O, C))
    U, dw = np.empty((P, O, C)), np.empty((O, C, 3, 3))
    k["weight_transform"](0, O, w, U)
    k["weight_transform_adjoint"](0, O, dU, dw)
    assert abs((U * dU).sum() - (w * dw).sum()) < 1e-11 * np.abs(U * dU).sum()


def test_winograd_matrices_compute_a_correlation(rng):
    """1-D: A^T [(G g) * (B^T d)] equals the correlation of d with g, for F(2, 3) and F(4, 3)."""
    from npunet.kernels import winograd as KW
    for m, (bt, g, at) in ((2, (KW.BT, KW.G, KW.AT)), (4, (KW.BT4, KW.G4, KW.AT4))):
        d, k = rng.standard_normal(m + 2), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), [d[i:i + 3] @ k for i in range(m)], atol=1e-14)


@pytest.mark.parametrize("k", [(2, 2), (3, 2)])
def test_upconv_shuffle_kernels_match_twins_and_are_adjoint(k, rng):
    kh, kw = k
    Co, H, W = 3, 4, 5
    cols, bias = rng.standard_normal((Co * kh * kw, H * W)), rng.standard_normal(Co)
    out = np.full((Co, H * kh, W * kw), np.nan)
    K.upconv_shuffle(cols, kh, kw, bias, out)
    np.testing.assert_array_equal(out, K.upconv_shuffle_ref(cols, kh, kw, bias, H, W))
    d = rng.standard_normal(out.shape)
    dcols = np.full(cols.shape, np.nan)
    K.upconv_unshuffle(d, kh, kw, dcols)
    np.testing.assert_array_equal(dcols, K.upconv_unshuffle_ref(d, kh, kw))
    out0 = np.empty_like(out)
    K.upconv_shuffle(cols, kh, kw, np.zeros(Co), out0)
    assert np.sum(d * out0) == pytest.approx(np.sum(dcols * cols), rel=1e-12)   # gather = shuffle's adjoint


@pytest.mark.parametrize("shape", [(8, 16, 128, 128), (3, 5, 7, 9), (1, 2, 1, 1), (2, 4, 388, 388)])
def test_bias_grad_is_the_float64_sum_within_its_bound(shape):
    """The fast backend's dbias sums each plane in the input dtype (pairwise) and the planes in float64:
    equal to the float64 sum up to ~log2(H*W) roundings of the plane's absolute sum (float32), exact
    to float64 rounding for float64; a transposed (non-contiguous) dout gives the same."""
    from npunet.backends.fast.parallel import bias_grad
    rng = np.random.default_rng(0)
    d64 = rng.standard_normal(shape) + 0.5          # an offset: the sums do not cancel to ~0
    N, O, H, W = shape
    for dtype, eps in ((np.float64, 2.0 ** -52), (np.float32, 2.0 ** -23)):
        d = d64.astype(dtype)
        ref = d.astype(np.float64).sum(axis=(0, 2, 3))
        bound = (np.log2(H * W) + N + 2) * eps * np.abs(d.astype(np.float64)).sum(axis=(0, 2, 3))
        for dd in (d, np.ascontiguousarray(d.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)):
            got = bias_grad(dd)
            assert got.dtype == dtype and got.shape == (O,)
            assert np.all(np.abs(got - ref) <= bound), (np.abs(got - ref) / bound).max()


def test_split_runs_small_work_on_the_calling_thread_and_large_work_on_every_core(monkeypatch):
    """A split hands ranges to other threads unless the caller's estimate (ns=) says the whole call is
    shorter than SERIAL_NS: then the kernel runs once, over the whole range, on this thread.  The fast
    BatchNorm on a small map takes the first way, on a large one the second; both equal the reference."""
    import threading

    from npunet.backends import fast, reference
    from npunet.kernels import util

    calls = []
    util.split(lambda i0, i1: calls.append((i0, i1, threading.get_ident())), 8, ns=util.SERIAL_NS - 1)
    assert calls == [(0, 8, threading.get_ident())]
    calls.clear()
    util.split(lambda i0, i1: calls.append((i0, i1, threading.get_ident())), 8, ns=util.SERIAL_NS)
    assert sorted(c[:2] for c in calls) == [(n * i // util.cores(), n * (i + 1) // util.cores())
                                           for n in [8] for i in range(util.cores())]
    if util.cores() > 1:                    # this thread runs the first range, a worker the others
        assert any(c[2] != threading.get_ident() for c in calls)

    rng = np.random.default_rng(0)
    seen = []
    real = fast.batchnorm.split

    def spy(kernel, n, *args, ns=None):
        seen.append(ns is not None and ns < util.SERIAL_NS)
        return real(kernel, n, *args, ns=ns)
    monkeypatch.setattr(fast.batchnorm, "split", spy)
    for shape in [(1, 8, 4, 4), (2, 16, 256, 256)]:   # 2M elements: every estimate above SERIAL_NS
        seen.clear()
        x = rng.standard_normal(shape)
        g, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        rm, rv = np.zeros(shape[1]), np.ones(shape[1])
        y, c, _, _ = fast.batchnorm2d_forward(x, g, b, rm, rv, True)
        d = rng.standard_normal(shape)
        grads = fast.batchnorm2d_backward(d, c)
        assert seen == [shape[0] == 1] * 3          # statistics, affine map, backward
        yr, cr, _, _ = reference.batchnorm2d_forward(x, g, b, rm, rv, True)
        np.testing.assert_allclose(y, yr, rtol=1e-10, atol=1e-10)
        for a, r in zip(grads, reference.batchnorm2d_backward(d, cr)):
            np.testing.assert_allclose(a, r, rtol=1e-9, atol=1e-9)
