"""Losses: hand-computed values, gradient checks in float64, stability and bad input."""
import math
import warnings

import numpy as np
import pytest

from npunet import losses as L
from npunet.gradcheck import gradcheck_fn

TOL = 1e-6


def check(loss, z, y, w=None, eps=1e-6, max_per_tensor=None):
    r = gradcheck_fn(lambda z: loss.forward(z, y, w), lambda g: g * loss.backward(), z, eps=eps,
                     max_per_tensor=max_per_tensor)
    return r.max_rel_error


def blobs(rng, shape, cell=4):
    """A blocky binary target (structure, not noise) and logits that roughly agree with it."""
    N, C, H, W = shape
    coarse = rng.random((N, C, H // cell + 1, W // cell + 1)) > 0.5
    y = np.kron(coarse, np.ones((1, 1, cell, cell)))[:, :, :H, :W].astype(np.float64)
    return (2 * y - 1) * 1.5 + rng.standard_normal(shape), y


# ---------------------------------------------------------------- values by hand

def test_values_by_hand():
    z = np.array([0.0, math.log(3)]).reshape(1, 2, 1, 1)
    assert math.isclose(L.CrossEntropyLoss().forward(z, np.array([[[1]]])), -math.log(3 / 4), rel_tol=1e-12)
    w = np.array([[[2.5]]])
    assert math.isclose(L.CrossEntropyLoss().forward(z, np.array([[[1]]]), w), -2.5 * math.log(3 / 4), rel_tol=1e-12)
    z0 = np.zeros((1, 1, 2, 2))
    y = np.array([1.0, 0, 1, 1]).reshape(1, 1, 2, 2)
    assert math.isclose(L.DiceLoss().forward(z0, y), 1 / 3, rel_tol=1e-12)      # (2*1.5+1)/(2+3+1)
    assert math.isclose(L.IoULoss().forward(z0, y), 4 / 9, rel_tol=1e-12)       # (1.5+1)/(2+3-1.5+1)
    assert math.isclose(L.BCEWithLogitsLoss().forward(z0, y), math.log(2), rel_tol=1e-12)
    assert math.isclose(L.FocalLoss().forward(np.zeros((1, 1, 1, 1)), np.ones((1, 1, 1, 1))),
                        0.25 * 0.25 * math.log(2), rel_tol=1e-12)
    # y = 0: a_t = 0.75, p_t = 1 - sigmoid(2)
    p = 1 / (1 + math.exp(-2))
    assert math.isclose(L.FocalLoss().forward(np.full((1, 1, 1, 1), 2.0), np.zeros((1, 1, 1, 1))),
                        0.75 * p ** 2 * (2 + math.log1p(math.exp(-2))), rel_tol=1e-12)


def test_cross_entropy_matches_definition(rng):
    z = rng.standard_normal((2, 4, 3, 5))
    y = rng.integers(0, 4, (2, 3, 5))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    ref = -np.mean(np.log(np.take_along_axis(p, y[:, None], 1)))
    assert math.isclose(L.CrossEntropyLoss().forward(z, y), ref, rel_tol=1e-12)


def test_stable_for_huge_logits():
    z = np.array([100.0, -100.0, 100.0, -100.0]).reshape(1, 1, 2, 2)
    y = np.array([0.0, 1.0, 1.0, 0.0]).reshape(1, 1, 2, 2)
    bce = L.BCEWithLogitsLoss()
    assert math.isclose(bce.forward(z, y), 50.0, rel_tol=1e-12)
    assert np.isfinite(bce.backward()).all()
    for loss in (L.FocalLoss(), L.DiceLoss(), L.IoULoss()):
        assert np.isfinite(loss.forward(z, y)) and np.isfinite(loss.backward()).all()
    ce = L.CrossEntropyLoss()
    zc = np.array([1000.0, -1000.0]).reshape(1, 2, 1, 1)
    assert math.isclose(ce.forward(zc, np.array([[[1]]])), 2000.0, rel_tol=1e-12)


def test_empty_masks_do_not_divide_by_zero(rng):
    z = rng.standard_normal((2, 1, 5, 5)) - 3
    for loss in (L.DiceLoss(), L.IoULoss()):
        v = loss.forward(z, np.zeros_like(z))
        assert 0 <= v < 1 and np.isfinite(loss.backward()).all()


# ---------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("shape", [(2, 1, 7, 9), (1, 1, 5, 4), (3, 1, 6, 6)])
@pytest.mark.parametrize("target", ["random", "empty", "full"])
def test_binary_losses_gradcheck(shape, target, rng):
    z, y = blobs(rng, shape)
    if target == "empty":
        y = np.zeros(shape)
    elif target == "full":
        y = np.ones(shape)
    for loss in (L.BCEWithLogitsLoss(), L.DiceLoss(), L.IoULoss(), L.FocalLoss(), L.FocalLoss(0.6, 0.5),
                 L.FocalLoss(-1, 0.0), L.CombinedLoss.unetpp()):
        assert check(loss, z, y) <= TOL, type(loss).__name__
    assert check(L.BCEWithLogitsLoss(), z, y, rng.uniform(0.5, 3, (shape[0],) + shape[2:])) <= TOL


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 2, 7, 3)])
def test_class_losses_gradcheck(shape, rng):
    z = rng.standard_normal(shape)
    y = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    assert check(L.CrossEntropyLoss(), z, y) <= TOL
    assert check(L.CrossEntropyLoss(), z, y, rng.uniform(1, 11, y.shape)) <= TOL
    assert check(L.DiceLoss(mode="multiclass"), z, y) <= TOL
    assert check(L.IoULoss(mode="multiclass"), z, y) <= TOL
    ym = (rng.random(shape) > 0.5).astype(float)
    assert check(L.DiceLoss(mode="multilabel"), z, ym) <= TOL
    assert check(L.IoULoss(mode="multilabel", smooth=0.1), z, ym) <= TOL


@pytest.mark.parametrize("shape,scales", [((2, 1, 23, 25), 2), ((1, 2, 45, 43), 3), ((1, 1, 12, 14), 1)])
def test_ms_ssim_gradcheck_few_scales(shape, scales, rng):
    z, y = blobs(rng, shape)
    assert check(L.MSSSIMLoss(scales=scales), z, y) <= TOL


def test_ms_ssim_gradcheck_five_scales(rng):
    z, y = blobs(rng, (1, 1, 165, 171), cell=10)
    # a scalar loss over 28k pixels: per-pixel gradients ~1e-5, so h = 1e-6 would be
    # rounding-limited; h = 1e-4 keeps the truncation error ~1e-8.
    assert check(L.MSSSIMLoss(), z, y, eps=1e-4, max_per_tensor=40) <= TOL
    assert check(L.CombinedLoss.unet3plus(), z, y, eps=1e-4, max_per_tensor=40) <= TOL


# ---------------------------------------------------------------- MS-SSIM against an independent implementation

def _ref_filter(A, g):
    from numpy.lib.stride_tricks import sliding_window_view
    A = sliding_window_view(A, len(g), axis=2) @ g
    return sliding_window_view(A, len(g), axis=3) @ g


def _ref_ms_ssim(x, y, weights):
    g = np.exp(-(np.arange(11) - 5) ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for l, _ in enumerate(weights):
        mx, my = _ref_filter(x, g), _ref_filter(y, g)
        sxx = _ref_filter(x * x, g) - mx ** 2
        syy = _ref_filter(y * y, g) - my ** 2
        sxy = _ref_filter(x * y, g) - mx * my
        cs = (2 * sxy + C2) / (sxx + syy + C2)
        ss = (2 * mx * my + C1) / (mx ** 2 + my ** 2 + C1) * cs
        vals.append((ss if l == len(weights) - 1 else cs).mean(axis=(2, 3)))
        pads = [(0, 0), (0, 0)] + [(s % 2, s % 2) for s in x.shape[2:]]
        x, y = np.pad(x, pads), np.pad(y, pads)
        Ho, Wo = x.shape[2] // 2, x.shape[3] // 2
        x = x[:, :, :2 * Ho, :2 * Wo].reshape(x.shape[0], x.shape[1], Ho, 2, Wo, 2).mean(axis=(3, 5))
        y = y[:, :, :2 * Ho, :2 * Wo].reshape(y.shape[0], y.shape[1], Ho, 2, Wo, 2).mean(axis=(3, 5))
    ms = np.prod([np.maximum(v, 0) ** w for v, w in zip(vals, weights)], axis=0)
    return ms.mean()


def test_ms_ssim_value_matches_reference(rng):
    z, y = blobs(rng, (2, 1, 167, 170), cell=12)
    p = 1 / (1 + np.exp(-z))
    got = L.MSSSIMLoss().forward(z, y)
    assert math.isclose(got, 1 - _ref_ms_ssim(p, y, L.MS_SSIM_WEIGHTS), rel_tol=1e-10)
    assert math.isclose(L.ssim(p, p), 1.0, rel_tol=1e-12)


# ---------------------------------------------------------------- deep supervision

def test_deep_supervision_averages_heads(rng):
    z1, y = blobs(rng, (2, 1, 6, 6))
    z2 = z1 * 0.5
    ds = L.DeepSupervisionLoss(L.DiceLoss())
    v = ds.forward([z1, z2], y)
    assert math.isclose(v, (L.DiceLoss().forward(z1, y) + L.DiceLoss().forward(z2, y)) / 2, rel_tol=1e-12)
    g1, g2 = ds.backward()
    d = L.DiceLoss()
    d.forward(z2, y)
    np.testing.assert_allclose(g2, d.backward() / 2, rtol=1e-12)


def test_gradients_keep_dtype(rng):
    z, y = blobs(rng, (1, 1, 6, 6))
    z32 = z.astype(np.float32)
    for loss in (L.BCEWithLogitsLoss(), L.DiceLoss(), L.IoULoss(), L.FocalLoss(), L.MSSSIMLoss(scales=1)):
        loss.forward(z32 if not isinstance(loss, L.MSSSIMLoss) else np.pad(z32, ((0, 0), (0, 0), (3, 3), (3, 3))),
                     y.astype(np.float32) if not isinstance(loss, L.MSSSIMLoss) else np.pad(y, ((0, 0), (0, 0), (3, 3), (3, 3))))
        assert loss.backward().dtype == np.float32


# ---------------------------------------------------------------- bad input

def test_bad_inputs_are_named(rng):
    z = rng.standard_normal((2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"DiceLoss: target shape \(2, 1, 5, 5\) does not match the logits"):
        L.DiceLoss().forward(z, np.zeros((2, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: expected a binary target.*\{0, 255\} mask: divide it by 255"):
        L.BCEWithLogitsLoss().forward(z, np.full((2, 1, 4, 4), 255.0))
    with pytest.raises(ValueError, match=r"IoULoss: expected a binary target.*0.5"):
        L.IoULoss().forward(z, np.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target labels must lie in \[0, 3\).*\[0, 3\]"):
        L.CrossEntropyLoss().forward(rng.standard_normal((1, 3, 2, 2)), np.array([[[0, 1], [2, 3]]]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected integer class labels"):
        L.CrossEntropyLoss().forward(rng.standard_normal((1, 3, 2, 2)), np.zeros((1, 2, 2)))
    bad = z.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"FocalLoss: the logits contain 1 NaN"):
        L.FocalLoss().forward(bad, np.zeros_like(z))
    with pytest.raises(ValueError, match=r"MSSSIMLoss: 5 scales need the smaller image side > 160, got \(4, 4\)"):
        L.MSSSIMLoss().forward(z, np.zeros_like(z))
    with pytest.raises(RuntimeError, match=r"DiceLoss: backward\(\) called before forward"):
        L.DiceLoss().backward()
    with pytest.raises(ValueError, match=r"mode='binary' expects logits with 1 channel"):
        L.DiceLoss().forward(rng.standard_normal((1, 2, 3, 3)), np.zeros((1, 2, 3, 3)))


def test_probabilities_instead_of_logits_warn(rng):
    p = rng.random((1, 1, 5, 5))
    with pytest.warns(UserWarning, match=r"BCEWithLogitsLoss: every logit lies in \[0, 1\]"):
        L.BCEWithLogitsLoss().forward(p, np.zeros_like(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.BCEWithLogitsLoss().forward(p - 0.5, np.zeros_like(p))


# ---------------------------------------------------------------- the loss protocol

def test_bce_on_probabilities_matches_pytorch_definition_and_gradchecks(rng):
    p = rng.uniform(0.05, 0.95, (3, 2))
    y = np.array([[1.0, 0], [0, 1], [1, 0]])
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert math.isclose(L.BCELoss().forward(p, y), ref, rel_tol=1e-12)
    assert check(L.BCELoss(), p, y) <= TOL
    # PyTorch clamps each log at -100: a certain, wrong prediction costs 100, not inf
    assert math.isclose(L.BCELoss().forward(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])), 100.0)
    with pytest.raises(ValueError, match=r"BCELoss: probabilities .* \[0, 1\]"):
        L.BCELoss().forward(np.array([[1.5, 0.2]]), np.array([[1.0, 0.0]]))


@pytest.mark.parametrize("loss,target,weighted", [
    (L.CrossEntropyLoss(), "class", True), (L.BCEWithLogitsLoss(), "binary", True), (L.FocalLoss(), "binary", False),
    (L.DiceLoss(), "binary", False), (L.DiceLoss(mode="multiclass"), "class", False), (L.IoULoss(), "binary", False),
    (L.MSSSIMLoss(scales=2), "binary", False), (L.CombinedLoss.unetpp(), "binary", True),
    (L.CombinedLoss.unet3plus(ms_ssim_scales=2), "binary", False), (L.CombinedLoss.unet(), "class", True)])
def test_losses_declare_target_and_weight_map(loss, target, weighted):
    assert loss.target == target and loss.accepts_weight == weighted
    assert L.DeepSupervisionLoss(loss).target == target


def test_a_loss_that_cannot_use_a_weight_map_rejects_one(rng):
    z, y = blobs(rng, (1, 1, 8, 8))
    with pytest.raises(ValueError, match="DiceLoss cannot use a weight map"):
        L.DiceLoss().forward(z, y, np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match="FocalLoss cannot use a weight map"):
        L.FocalLoss().forward(z, y, np.ones((1, 8, 8)))
    # a combination passes the map to the terms that take one: BCE weighted, Dice not
    w = rng.uniform(0.5, 3, (1, 8, 8))
    combo = L.CombinedLoss.unetpp()
    v = combo.forward(z, y, w)
    assert math.isclose(v, L.BCEWithLogitsLoss().forward(z, y, w) + L.DiceLoss().forward(z, y), rel_tol=1e-12)
    assert check(combo, z, y, w) <= TOL
    with pytest.raises(ValueError, match="different targets"):
        L.CombinedLoss([(L.CrossEntropyLoss(), 1.0), (L.DiceLoss(), 1.0)])


def test_deep_supervision_keeps_no_copies_of_the_loss(rng):
    loss = L.CombinedLoss.unetpp()
    ds = L.DeepSupervisionLoss(loss)
    z1, y = blobs(rng, (2, 1, 8, 8))
    z2 = z1 + rng.standard_normal(z1.shape)
    v = ds.forward([z1, z2], y)
    g1, g2 = ds.backward()
    # each head's gradient is that head's own, halved
    np.testing.assert_allclose(g1, loss.loss_backward(loss.loss_forward(z1, y)[1]) / 2)
    np.testing.assert_allclose(g2, loss.loss_backward(loss.loss_forward(z2, y)[1]) / 2)
    assert math.isclose(v, (loss.forward(z1, y) + loss.forward(z2, y)) / 2)
    assert [k for k in vars(ds) if k not in ("loss", "target", "accepts_weight", "values", "_cache")] == []


# ---------------------------------------------------------------- PyTorch's and SMP's signatures
# Recorded values: torch 2.13 / segmentation_models_pytorch 0.6 on these inputs (float64), computed once;
# npunet equals them to float64 rounding across every option (a private comparison).

Z = np.array([[[[0.0, 0.6, -0.55], [-1.78, -0.91, -1.98]], [[0.12, 2.68, -0.98], [-1.24, 0.98, 0.71]],
               [[0.21, -1.86, -0.06], [1.39, -2.69, -0.92]]],
              [[[-3.8, -2.58, -3.68], [-0.47, -2.53, 0.54]], [[0.31, -0.37, -5.03], [-1.08, -0.1, 0.23]],
               [[-3.06, -0.96, -1.96], [-1.62, 2.12, -1.62]]]])
Y = np.array([[[255, 0, 1], [2, 1, 0]], [[1, 0, 2], [2, 0, 255]]])
YB = np.array([[[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]], [[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])


def _vg(loss, z, y, w=None):
    v = loss.forward(z, y, w)
    return v, loss.backward()


def test_cross_entropy_weight_ignore_smoothing_equal_pytorch():
    ce = L.CrossEntropyLoss(weight=[0.5, 2.0, 1.0], ignore_index=255, label_smoothing=0.1)
    v, g = _vg(ce, Z, Y)
    assert v == pytest.approx(1.1532887777741723, rel=1e-14)
    np.testing.assert_allclose(g[1, :, 0, 0], [0.0012055731246220173, -0.0038777334919802148, 0.0026721603673581992],
                               rtol=1e-13)
    assert (g[0, :, 0, 0] == 0).all() and (g[1, :, 1, 2] == 0).all()          # ignored pixels
    assert L.CrossEntropyLoss(weight=[0.5, 2.0, 1.0], ignore_index=255, reduction="sum").forward(Z, Y) == \
        pytest.approx(12.049732068314597, rel=1e-14)
    assert check(ce, Z, Y) <= TOL
    # a weight map multiplies each pixel's loss; the mean still divides by sum w[y] (PyTorch's rule)
    m = np.random.default_rng(0).uniform(0.5, 2, Y.shape)
    per = L.CrossEntropyLoss(weight=[0.5, 2.0, 1.0], ignore_index=255, label_smoothing=0.1, reduction="none")
    l = per.forward(Z, Y)
    kept = Y != 255
    denom = np.array([0.5, 2.0, 1.0])[np.where(kept, Y, 0)][kept].sum()
    assert ce.forward(Z, Y, m) == pytest.approx((l * m).sum() / denom, rel=1e-13)
    assert check(ce, Z, Y, m) <= TOL
    up = np.random.default_rng(1).standard_normal(Y.shape)
    r = gradcheck_fn(lambda z: float((per.forward(z, Y) * up).sum()), lambda g: g * per.backward(up), Z)
    assert r.max_rel_error <= TOL
    with pytest.raises(ValueError, match="reduction='none' returns one loss per pixel"):
        per.forward(Z, Y)
        per.backward()
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\)"):
        L.CrossEntropyLoss().forward(Z, Y)                                   # 255 without ignore_index


def test_bce_with_logits_pos_weight_equal_pytorch():
    z = Z[:, :1]
    bce = L.BCEWithLogitsLoss(pos_weight=np.array([3.0]))
    v, g = _vg(bce, z, YB)
    assert v == pytest.approx(0.7125678426233711, rel=1e-14)
    np.testing.assert_allclose(g[0, 0, 0], [0.041666666666666664, -0.08858592344355115, 0.030488700749099946], rtol=1e-13)
    w = np.random.default_rng(2).uniform(0.1, 2, z.shape)
    for loss in (bce, L.BCEWithLogitsLoss(weight=w, pos_weight=np.array([0.5]), reduction="sum")):
        assert check(loss, z, YB) <= TOL
    # by hand: -w (pw y log p + (1 - y) log(1 - p)), summed
    p = 1 / (1 + np.exp(-z))
    by_hand = -(w * (0.5 * YB * np.log(p) + (1 - YB) * np.log(1 - p))).sum()
    assert L.BCEWithLogitsLoss(weight=w, pos_weight=np.array([0.5]), reduction="sum").forward(z, YB) == \
        pytest.approx(by_hand, rel=1e-13)


def test_smp_dice_jaccard_focal_signatures_equal_smp():
    ym = np.where(Y == 255, -1, Y)
    v, g = _vg(L.DiceLoss("multiclass", ignore_index=-1), Z, ym)
    assert v == pytest.approx(0.6149834701896987, rel=1e-13)
    np.testing.assert_allclose(g[1, :, 0, 0], [0.0010169589657990112, -0.0038525401170551605, 0.002835581151256153],
                               rtol=1e-12)
    v, g = _vg(L.JaccardLoss("binary", smooth=1.0, log_loss=True), Z[:, :1], YB)
    assert v == pytest.approx(0.7999080015409488, rel=1e-13)
    np.testing.assert_allclose(g[0, 0, 0], [0.043807351588190456, -0.08921311959805961, 0.040654561591476984], rtol=1e-12)
    v, g = _vg(L.FocalLoss("multiclass", ignore_index=-1, alpha=0.25), Z, ym)
    assert v == pytest.approx(0.21553299969483297, rel=1e-13)
    np.testing.assert_allclose(g[1, :, 0, 0], [7.79966796597663e-07, -0.0015781411981095805, 6.635971737238432e-06],
                               rtol=1e-11)
    # SMP's Dice by hand: one score per class over the whole batch, (I + s) / ((Sp + Sy) / 2 + s)
    p = 1 / (1 + np.exp(-Z[:, :1]))
    d = (np.sum(p * YB) + 0.5) / ((p.sum() + YB.sum()) / 2 + 0.5)
    assert L.DiceLoss("binary", smooth=0.5).forward(Z[:, :1], YB) == pytest.approx(1 - d, rel=1e-13)
    for loss, z, y in ((L.DiceLoss("multiclass", classes=[0, 2], ignore_index=-1), Z, ym),
                       (L.IoULoss(mode="multilabel", log_loss=True, smooth=0.1), Z, (Z > 0.2).astype(float)),
                       (L.FocalLoss("binary", gamma=1.5), Z[:, :1], YB[:, 0])):
        assert check(loss, z, y) <= TOL
    assert L.DiceLoss(smooth=1.0).smp is False and L.DiceLoss("binary").smp is True
    with pytest.raises(ValueError, match="classes= selects classes"):
        L.DiceLoss("binary", classes=[0])
    with pytest.raises(TypeError, match="signatures: DiceLoss"):
        L.DiceLoss(smoth=1.0)
