"""Layers: gradient checks (float64, rel. error <= 1e-6), forward semantics against
independent loop references, dtype handling, purity and bad-input errors."""
import numpy as np
import pytest

import npunet
from npunet import functional as F, gradcheck, nn

TOL = 1e-6


def distinct(rng, shape, spacing=1e-2):
    """Values with no ties closer than `spacing` (max-pool needs a unique max)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing + rng.uniform(0, spacing / 10, n)).reshape(shape) - n * spacing / 2


def away_from_zero(rng, shape, gap=1e-3):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < gap, gap * 10, x)


# ---------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("N,C,H,W,O,k,s,p,g", [
    (2, 3, 7, 5, 4, 3, 1, 1, 1), (1, 2, 8, 8, 3, 2, 2, 0, 1), (2, 1, 6, 9, 2, (3, 2), 2, 1, 1),
    (2, 4, 5, 6, 4, 3, 1, 0, 2), (1, 3, 6, 5, 3, 3, 1, 1, 3), (3, 2, 4, 4, 5, 1, 1, 0, 1),
    (1, 2, 9, 7, 3, (2, 3), (2, 1), (1, 0), 1)])
@pytest.mark.usefixtures("each_backend")
def test_conv2d_gradcheck(N, C, H, W, O, k, s, p, g, rng):
    m = nn.Conv2d(C, O, k, stride=s, padding=p, groups=g).to(np.float64)
    assert gradcheck(m, rng.standard_normal((N, C, H, W))).max_rel_error <= TOL


@pytest.mark.parametrize("N,C,H,W,O,k,s,p,op", [
    (2, 3, 4, 5, 4, 2, 2, 0, 0), (1, 2, 5, 4, 3, 3, 2, 1, 0), (2, 2, 4, 4, 3, (3, 2), 1, 0, 0),
    (1, 3, 3, 5, 2, 3, 2, 1, 1), (2, 1, 3, 3, 2, 4, 3, 1, 0)])
@pytest.mark.usefixtures("each_backend")
def test_conv_transpose2d_gradcheck(N, C, H, W, O, k, s, p, op, rng):
    m = nn.ConvTranspose2d(C, O, k, stride=s, padding=p, output_padding=op).to(np.float64)
    assert gradcheck(m, rng.standard_normal((N, C, H, W))).max_rel_error <= TOL


@pytest.mark.usefixtures("each_backend")
def test_grouped_conv_transpose_matches_per_group_and_gradchecks(rng):
    m = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).to(np.float64)
    x = rng.standard_normal((2, 4, 3, 4))
    assert m.weight.shape == (4, 3, 3, 3)
    y = m(x)
    for g in range(2):  # each group is an ordinary transposed conv on its own channels
        sub = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1).to(np.float64)
        sub.weight.data = m.weight.data[2 * g:2 * g + 2].copy()
        sub.bias.data = m.bias.data[3 * g:3 * g + 3].copy()
        np.testing.assert_allclose(y[:, 3 * g:3 * g + 3], sub(x[:, 2 * g:2 * g + 2]), atol=1e-12)
    assert gradcheck(m, x).max_rel_error <= TOL


@pytest.mark.parametrize("shape,k,s,p", [((2, 3, 7, 6), 2, None, 0), ((1, 2, 9, 8), 3, 2, 1), ((2, 2, 8, 7), (3, 2), 1, 0)])
@pytest.mark.usefixtures("each_backend")
def test_maxpool_gradcheck(shape, k, s, p, rng):
    assert gradcheck(nn.MaxPool2d(k, s, p), distinct(rng, shape)).max_rel_error <= TOL


@pytest.mark.parametrize("out", [1, (2, 3), (3, 2)])
@pytest.mark.usefixtures("each_backend")
def test_adaptive_maxpool_gradcheck(out, rng):
    assert gradcheck(nn.AdaptiveMaxPool2d(out), distinct(rng, (2, 3, 7, 5))).max_rel_error <= TOL


@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="bilinear", align_corners=True),
                                dict(scale_factor=4, mode="bilinear", align_corners=False),
                                dict(size=(7, 11), mode="bilinear", align_corners=False),
                                dict(size=(3, 4), mode="bilinear", align_corners=True),
                                dict(scale_factor=2), dict(size=(5, 9))])
@pytest.mark.usefixtures("each_backend")
def test_upsample_gradcheck(kw, rng):
    assert gradcheck(nn.Upsample(**kw), rng.standard_normal((2, 3, 4, 5))).max_rel_error <= TOL


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.usefixtures("each_backend")
def test_batchnorm_gradcheck(training, rng):
    m = nn.BatchNorm2d(3).to(np.float64)
    m.weight.data = rng.standard_normal(3)
    m.bias.data = rng.standard_normal(3)
    m.running_mean, m.running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    m.train(training)
    assert gradcheck(m, rng.standard_normal((2, 3, 5, 4)) * 2 + 1).max_rel_error <= TOL


@pytest.mark.parametrize("layer", [nn.ReLU, nn.Sigmoid, nn.Identity, lambda: nn.Dropout(0.3, seed=1),
                                   lambda: nn.Dropout2d(0.5, seed=2), nn.SiLU, nn.ReLU6,
                                   lambda: nn.StochasticDepth(0.4, seed=3)])
@pytest.mark.usefixtures("each_backend")
def test_elementwise_gradcheck(layer, rng):
    x = away_from_zero(rng, (2, 4, 3, 5)) * 4  # * 4: ReLU6 sees both corners
    r = gradcheck(layer(), x)
    assert r.max_rel_error <= TOL and r.skipped <= 0.05 * (r.checked + r.skipped)


@pytest.mark.usefixtures("each_backend")
@pytest.mark.parametrize("layer,shape", [(lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
                                         (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 5)),
                                         (lambda: nn.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 5)),
                                         (lambda: nn.ZeroPad2d((-1, 1, 2, -2)), (1, 2, 6, 5))])
def test_pool_and_pad_gradcheck(layer, shape, rng):
    assert gradcheck(layer(), rng.standard_normal(shape)).max_rel_error <= TOL


@pytest.mark.usefixtures("each_backend")
def test_join_gradchecks(rng):
    a, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((2, 2, 5, 4))
    assert gradcheck(nn.CropConcat(), (a, b)).max_rel_error <= TOL
    assert gradcheck(nn.Concat(), (rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((2, 2, 3, 3)),
                                   rng.standard_normal((2, 3, 3, 3)))).max_rel_error <= TOL
    assert gradcheck(nn.Add(), (a, rng.standard_normal((1, 3, 1, 8)))).max_rel_error <= TOL
    assert gradcheck(nn.Mul(), (a, rng.standard_normal((2, 1, 1, 1)))).max_rel_error <= TOL


@pytest.mark.usefixtures("each_backend")
def test_sequential_gradcheck(rng):
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.ConvTranspose2d(3, 2, 2, 2)).to(np.float64)
    assert gradcheck(m, rng.standard_normal((2, 2, 8, 10))).max_rel_error <= 1e-5


def test_gradcheck_catches_a_wrong_backward(rng):
    class HalfWrongReLU(nn.ReLU):
        def backward(self, grad):
            g = super().backward(grad)
            g[0, 0, 0, 0] *= 1.5  # one wrong element
            return g

    x = np.abs(rng.standard_normal((1, 2, 3, 3))) + 0.1
    r = gradcheck(HalfWrongReLU(), x)
    assert r.max_rel_error > 1e-2 and r.where.startswith("input 0[0, 0, 0, 0]")

    class ForgotBias(nn.Conv2d):
        def backward(self, grad):
            dx = super().backward(grad)
            self.bias.grad[:] = 0
            return dx

    r = gradcheck(ForgotBias(2, 2, 3).to(np.float64), rng.standard_normal((1, 2, 5, 5)))
    assert r.errors["bias"] > 0.5 and not r.ok()


# ---------------------------------------------------------------- forward semantics

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,O,k,s,p,g", [(3, 4, 3, 1, 1, 1), (2, 3, (3, 2), 2, (1, 0), 1), (4, 4, 3, 1, 0, 4), (4, 6, 2, 3, 1, 2)])
@pytest.mark.usefixtures("each_backend")
def test_conv_forward_matches_naive_loops(dtype, C, O, k, s, p, g, rng):
    m = nn.Conv2d(C, O, k, s, p, groups=g).to(dtype)
    x = rng.standard_normal((2, C, 9, 7)).astype(dtype)
    ref = F.conv2d_naive(x.astype(np.float64), m.weight.data.astype(np.float64), m.bias.data.astype(np.float64), s, p, g)
    y = m(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("pipelines", [3, 2, 1])
def test_conv_tiles_agree_with_untiled(monkeypatch, rng, pipelines):
    from npunet.backends import blas
    m = nn.Conv2d(30, 64, 3, padding=1).to(np.float64)  # C_in * 9 >= 256, C_out >= 64: pipelines allowed
    x = rng.standard_normal((3, 30, 11, 9))
    full = m(x)
    dfull = m.backward(np.ones_like(full))
    gw = m.weight.grad.copy()
    # 3 pipelines: what a 3-core machine runs; 1: machines without BLAS thread control
    monkeypatch.setattr(blas, "plan", lambda: (pipelines, 1 if pipelines > 1 else None))
    m.zero_grad()
    with npunet.fast_options(tile_elems=270 * 11 * 2):  # two rows per tile: 18 tiles
        np.testing.assert_allclose(m(x), full, atol=1e-12)
        np.testing.assert_allclose(m.backward(np.ones_like(full)), dfull, atol=1e-12)
        np.testing.assert_allclose(m.weight.grad, gw, atol=1e-10)
        assert gradcheck(m, x, max_per_tensor=30).max_rel_error <= TOL


@pytest.mark.usefixtures("each_backend")
def test_conv_transpose_forward_matches_loop_scatter(rng):
    m = nn.ConvTranspose2d(3, 2, (3, 2), stride=2, padding=1).to(np.float64)
    x = rng.standard_normal((2, 3, 4, 5))
    Ho, Wo = (4 - 1) * 2 - 2 + 3, (5 - 1) * 2 - 2 + 2
    ref = np.zeros((2, 2, Ho + 4, Wo + 4))
    for n in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    ref[n, :, 2 * h:2 * h + 3, 2 * w:2 * w + 2] += x[n, c, h, w] * m.weight.data[c]
    ref = ref[:, :, 1:1 + Ho, 1:1 + Wo] + m.bias.data[None, :, None, None]
    np.testing.assert_allclose(m(x), ref, atol=1e-12)


def _bilinear_by_formula(x, oh, ow, align_corners, scale=None):
    """Independent per-pixel loop following PyTorch's F.interpolate sampling rules."""
    N, C, H, W = x.shape
    out = np.zeros((N, C, oh, ow))

    def src(d, i, o, s):
        if align_corners:
            return d * (i - 1) / (o - 1) if o > 1 else 0.0
        return max((d + 0.5) / s - 0.5, 0.0)

    for y in range(oh):
        sy = src(y, H, oh, scale or oh / H)
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, H - 1); ly = sy - y0
        for xx in range(ow):
            sx = src(xx, W, ow, scale or ow / W)
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, W - 1); lx = sx - x0
            out[:, :, y, xx] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                                + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


@pytest.mark.parametrize("ac", [True, False])
@pytest.mark.parametrize("scale", [2, 4, 16])
@pytest.mark.usefixtures("each_backend")
def test_bilinear_scale_matches_formula(ac, scale, rng):
    x = rng.standard_normal((1, 2, 3, 4))
    y = nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=ac)(x)
    np.testing.assert_allclose(y, _bilinear_by_formula(x, 3 * scale, 4 * scale, ac, None if ac else scale), atol=1e-12)


@pytest.mark.usefixtures("each_backend")
def test_bilinear_size_and_nearest(rng):
    x = rng.standard_normal((1, 2, 5, 6))
    y = nn.Upsample(size=(7, 4), mode="bilinear", align_corners=False)(x)
    np.testing.assert_allclose(y, _bilinear_by_formula(x, 7, 4, False), atol=1e-12)
    z = nn.Upsample(scale_factor=2)(x)
    np.testing.assert_array_equal(z, x.repeat(2, axis=2).repeat(2, axis=3))


@pytest.mark.usefixtures("each_backend")
def test_maxpool_forward_and_global_max(rng):
    x = rng.standard_normal((2, 3, 7, 9))
    y = nn.MaxPool2d(2)(x)
    assert y.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(y, x[:, :, :6, :8].reshape(2, 3, 3, 2, 4, 2).max(axis=(3, 5)))
    np.testing.assert_array_equal(nn.AdaptiveMaxPool2d(1)(x)[..., 0, 0], x.max(axis=(2, 3)))


@pytest.mark.usefixtures("each_backend")
def test_batchnorm_running_statistics_follow_pytorch(rng):
    m = nn.BatchNorm2d(3).to(np.float64)
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(4):
        x = rng.standard_normal((4, 3, 5, 6)) * (step + 1) + step
        y = m(x)
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        n = x.size / 3
        rm = 0.9 * rm + 0.1 * mean
        rv = 0.9 * rv + 0.1 * var * n / (n - 1)
        np.testing.assert_allclose(y, (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), atol=1e-10)
    np.testing.assert_allclose(m.running_mean, rm, rtol=1e-12)
    np.testing.assert_allclose(m.running_var, rv, rtol=1e-12)
    assert int(m.num_batches_tracked) == 4
    m.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(m(x), (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), atol=1e-10)


@pytest.mark.usefixtures("each_backend")
def test_dropout_is_inverted_seedable_and_identity_in_eval(rng):
    x = np.ones((4, 8, 16, 16), np.float32)
    a, b = nn.Dropout(0.25, seed=7), nn.Dropout(0.25, seed=7)
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(ya).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((ya == 0).mean() - 0.25) < 0.02
    y2 = nn.Dropout2d(0.5, seed=3)(x)
    per_channel = y2.reshape(4, 8, -1)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))  # whole channels
    a.eval()
    assert a(x) is x or np.array_equal(a(x), x)


@pytest.mark.usefixtures("each_backend")
def test_crop_concat_crops_the_centre(rng):
    skip = rng.standard_normal((1, 2, 64, 64))
    x = rng.standard_normal((1, 3, 56, 56))
    out = nn.CropConcat()(skip, x)
    assert out.shape == (1, 5, 56, 56)
    np.testing.assert_array_equal(out[:, :2], skip[:, :, 4:60, 4:60])
    np.testing.assert_array_equal(out[:, 2:], x)


# ---------------------------------------------------------------- dtype, purity, layouts

ALL_LAYERS = [
    (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 5)),
    (lambda: nn.ConvTranspose2d(3, 2, 2, 2), (2, 3, 4, 5)),
    (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda: nn.AdaptiveMaxPool2d(1), (2, 3, 6, 6)),
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: nn.ReLU(), (2, 3, 4, 4)),
    (lambda: nn.Sigmoid(), (2, 3, 4, 4)),
    (lambda: nn.Dropout(0.5, seed=0), (2, 3, 4, 4)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make,shape", ALL_LAYERS)
@pytest.mark.usefixtures("each_backend")
def test_dtype_preserved_and_inputs_untouched(make, shape, dtype, rng):
    m = make().to(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x0 = x.copy()
    y = m(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    g0 = g.copy()
    dx = m.backward(g)
    assert y.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)
    for p in m.parameters():
        assert p.grad.dtype == dtype


@pytest.mark.parametrize("make,shape", ALL_LAYERS[:-1])  # dropout draws a new mask per call
@pytest.mark.usefixtures("each_backend")
def test_non_contiguous_and_negative_stride_inputs(make, shape, rng):
    m = make().to(np.float64)
    x = rng.standard_normal(shape)
    ref = m(np.ascontiguousarray(x))
    gref = m.backward(np.ones_like(ref))
    xf = np.ascontiguousarray(x[:, :, ::-1, :])[:, :, ::-1, :]  # negative strides, same values
    np.testing.assert_allclose(m(xf), ref, atol=1e-12)
    np.testing.assert_allclose(m.backward(np.ones_like(ref)[:, :, ::-1][:, :, ::-1]), gref, atol=1e-12)
    xt = np.asfortranarray(x)
    np.testing.assert_allclose(m(xt), ref, atol=1e-12)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("x,err,msg", [
    (np.zeros((3, 8, 8), np.float32), ValueError, r"Conv2d.*expected a 4-D input.*got shape \(3, 8, 8\)"),
    (np.zeros((1, 2, 8, 8), np.float32), ValueError, r"Conv2d.*expected 3 channels.*got 2"),
    (np.zeros((1, 3, 8, 8), np.int64), TypeError, r"Conv2d.*float32 or float64.*int64"),
    (np.zeros((1, 3, 8, 8), bool), TypeError, r"Conv2d.*float32 or float64.*bool"),
    (np.zeros((1, 3, 8, 8), np.float16), TypeError, r"Conv2d.*float32 or float64.*float16"),
    (np.zeros((1, 3, 8, 8), np.float64), TypeError, r"Conv2d.*float64 does not match.*float32"),
    (np.zeros((1, 3, 2, 8), np.float32), ValueError, r"Conv2d.*2x8.*smaller than the 3x3 kernel"),
    ([[1.0]], TypeError, r"Conv2d.*numpy array.*list"),
])
def test_conv_bad_input_messages(x, err, msg):
    with pytest.raises(err, match=msg):
        nn.Conv2d(3, 4, 3)(x)


def test_nan_and_inf_named():
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 1, 2, 3] = np.nan
    with pytest.raises(FloatingPointError, match=r"Conv2d.*1 NaN/Inf"):
        nn.Conv2d(3, 4, 3)(x)
    x[0, 1, 2, 3] = np.inf
    with pytest.raises(FloatingPointError, match=r"MaxPool2d.*NaN/Inf"):
        nn.MaxPool2d(2)(x)


def test_other_bad_inputs_named():
    with pytest.raises(RuntimeError, match=r"Conv2d.*backward\(\) called before forward"):
        nn.Conv2d(1, 1, 3).backward(np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"CropConcat.*skip map \(4, 4\) is smaller than x \(6, 6\)"):
        nn.CropConcat()(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*more than 1 value per channel"):
        nn.BatchNorm2d(2)(np.zeros((1, 2, 1, 1), np.float32))
    with pytest.raises(TypeError, match=r"Concat.*mixed|Concat.*input 1"):
        nn.Concat()(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*input 1x4 is smaller than the 2x2 window"):
        nn.MaxPool2d(2)(np.zeros((1, 1, 1, 4), np.float32))
    m = nn.Conv2d(1, 2, 3)
    y = m(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.*gradient of shape \(1, 2, 3, 3\).*got \(1, 2, 4, 4\)"):
        m.backward(np.zeros((1, 2, 4, 4), np.float32))


def test_layer_names_appear_in_errors():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match=r"Conv2d\('1'\): expected 3 channels.*got 2"):
        seq(np.zeros((1, 1, 8, 8), np.float32))


# ---------------------------------------------------------------- module API

def test_state_dict_names_save_load_roundtrip(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 3)
            self.bn1 = nn.BatchNorm2d(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1 = Block()
            self.outc = nn.Conv2d(2, 1, 1, bias=False)

    net = Net()
    keys = list(net.state_dict())
    assert keys == ["down1.conv1.weight", "down1.conv1.bias", "down1.bn1.weight", "down1.bn1.bias",
                    "down1.bn1.running_mean", "down1.bn1.running_var", "down1.bn1.num_batches_tracked", "outc.weight"]
    assert [n for n, _ in net.named_parameters()] == [k for k in keys if "running" not in k and "num_batches" not in k]
    net.save(tmp_path / "w.npz")
    other = Net()
    other.load(tmp_path / "w.npz")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    sd = net.state_dict()
    sd.pop("outc.weight")
    with pytest.raises(KeyError, match="missing keys \\['outc.weight'\\]"):
        other.load_state_dict(sd)
    sd = net.state_dict()
    sd["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match="unexpected keys \\['extra'\\]"):
        other.load_state_dict(sd)
    sd = net.state_dict()
    sd["outc.weight"] = np.zeros((2, 2, 1, 1))
    with pytest.raises(ValueError, match="'outc.weight' has shape \\(2, 2, 1, 1\\).*expects \\(1, 2, 1, 1\\)"):
        other.load_state_dict(sd)
    assert net.to(np.float64) is net and net.down1.bn1.running_mean.dtype == np.float64
    assert net.down1.bn1.num_batches_tracked.dtype == np.int64
    net.eval()
    assert not net.down1.bn1.training


def test_gradients_accumulate_and_zero_grad(rng):
    m = nn.Conv2d(2, 3, 3).to(np.float64)
    x = rng.standard_normal((1, 2, 5, 5))
    y = m(x)
    m.backward(np.ones_like(y))
    g1 = m.weight.grad.copy()
    m(x)
    m.backward(np.ones_like(y))
    np.testing.assert_allclose(m.weight.grad, 2 * g1)
    m.zero_grad()
    assert not m.weight.grad.any()


def test_default_init_matches_pytorch_bounds():
    m = nn.Conv2d(16, 8, 3)
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.9 * bound
    t = nn.ConvTranspose2d(16, 8, 2, 2)  # fan_in from weight.size(1) * k * k, as PyTorch
    bound = 1 / np.sqrt(8 * 4)
    assert np.abs(t.weight.data).max() <= bound and np.abs(t.weight.data).max() > 0.9 * bound


def test_nan_scan_once_per_model_call_or_in_every_layer():
    from npunet import models
    from npunet.data.tiling import predict_image
    m = models.UNet(1, 2, base_channels=2, depth=1, padding="same")
    x = np.zeros((1, 1, 8, 8), np.float32)
    x[0, 0, 1, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"^UNet.*the input contains 1 NaN/Inf"):
        m(x)                                     # the outermost call scans its input
    m.down1.conv1.bias.data[0] = np.inf          # corrupt inside: layers do not rescan by default
    with np.errstate(invalid="ignore"):
        assert not np.isfinite(m(np.zeros((1, 1, 8, 8), np.float32))).all()
        with pytest.raises(FloatingPointError, match=r"UNet.*the output contains"):
            predict_image(m, np.zeros((1, 8, 8), np.float32))
        nn.set_checks(finite="every")
        try:
            with pytest.raises(FloatingPointError, match=r"down1\.relu1.*the input contains 64 NaN/Inf"):
                m(np.zeros((1, 1, 8, 8), np.float32))
        finally:
            nn.set_checks(finite=True)
    with pytest.raises(ValueError, match="set_checks: finite must be"):
        nn.set_checks(finite="some")


def test_replacing_a_child_keeps_its_place_in_a_sequential(rng):
    """``seq.conv = other`` swaps the child in place (PyTorch's order), so the Sequential still runs
    conv, bn, relu: the exercise references put given modules inside the library's blocks this way."""
    from collections import OrderedDict
    seq = nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 3, 3, padding=1), bn=nn.BatchNorm2d(3), relu=nn.ReLU()))
    conv = nn.Conv2d(2, 3, 3, padding=1)
    seq.conv = conv
    assert [n for n, _ in seq.named_children()] == ["conv", "bn", "relu"]
    assert seq[0] is conv
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    out = seq(x)
    assert out.min() >= 0 and np.array_equal(out, np.maximum(seq.bn(conv(x)), 0))


OP_LAYERS = ("MaxPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d", "Upsample", "ZeroPad2d", "ReLU", "ReLU6", "SiLU",
             "Sigmoid", "CropConcat", "CenterCrop", "Concat", "Add", "Mul")


@pytest.mark.parametrize("name", OP_LAYERS)
def test_pair_layers_are_op_declarations(name):
    """The layers that are one backend pair declare it (op, arguments) instead of repeating the
    forward/backward of the protocol; only Conv2d and the layers with parameters or two paths write it out."""
    from npunet import backends
    from npunet.nn.op import Op
    cls = getattr(nn, name)
    assert issubclass(cls, Op) and cls.op in backends.OPS
    below = cls.__mro__[:cls.__mro__.index(Op)]
    assert not any("backward" in vars(c) for c in below), name
    assert sum("forward" in vars(c) for c in below) == (name == "CenterCrop")  # its pair takes a size, not `like`


def test_a_new_op_is_a_pair_per_backend_and_one_declaration(monkeypatch, rng):
    from npunet.backends import fast, reference
    from npunet.nn.op import Op

    def square_forward(x, scale):
        return scale * x * x, (x, scale)

    def square_backward(dout, cache):
        x, scale = cache
        return dout * 2 * scale * x

    for backend in (reference, fast):
        monkeypatch.setattr(backend, "square_forward", square_forward, raising=False)
        monkeypatch.setattr(backend, "square_backward", square_backward, raising=False)

    class Square(Op):
        op = "square"

        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def _check(self, x):
            return tuple(x.shape)

        def arguments(self, shape):
            return (self.scale,)

    x = rng.standard_normal((2, 3, 4, 4))
    for name in ("reference", "fast"):
        with npunet.backend(name):
            m = Square(3.0)
            assert np.array_equal(m(x), 3 * x * x)
            assert np.array_equal(m.backward(np.ones_like(x)), 6 * x)
    assert gradcheck(Square(0.5), x).max_rel_error <= 1e-6
