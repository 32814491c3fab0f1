"""Models: exact parameter counts, shape traces, legal sizes, whole-model gradient checks."""
import numpy as np
import pytest

import npunet
from npunet import gradcheck
from npunet.models import UNet, UNet3Plus, UNetPlusPlus, apply_cgm, nearest_legal, valid_input_sizes

MODEL_TOL = 1e-5


# ---------------------------------------------------------------- parameter counts (the papers and their code)

@pytest.mark.parametrize("make,count", [
    (lambda: UNet(1, 2, 64), 31_030_658),
    (lambda: UNet(1, 1, 32, padding="same"), 7_759_521),
    (lambda: UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", depth=1), 100_961),
    (lambda: UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", depth=2), 511_105),
    (lambda: UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", depth=3), 2_204_961),
    (lambda: UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", depth=4), 9_041_601),
    (lambda: UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", deep_supervision=True), 9_041_700),
    (lambda: UNetPlusPlus(3, 1), 9_163_329),
    (lambda: UNetPlusPlus(3, 1, deep_supervision=True), 9_163_428),
    (lambda: UNet3Plus(3, 1), 26_971_777),
    (lambda: UNet3Plus(3, 1, deep_supervision=True), 26_989_637),
    (lambda: UNet3Plus(3, 1, deep_supervision=True, cgm=True), 26_991_687),
])
def test_parameter_counts_match_the_papers(make, count):
    assert make().num_parameters() == count


@pytest.mark.parametrize("ds", [False, True])
def test_prune_shares_weights_and_counts(ds):
    m = UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", deep_supervision=ds)
    for level, count in zip((1, 2, 3, 4), (100_961, 511_105, 2_204_961, 9_041_601)):
        p = m.prune(level)
        assert p.num_parameters() == count and p.depth == level
        assert p.x0_0 is m.x0_0 and p.x0_0.conv1.weight is m.x0_0.conv1.weight
    assert m.prune(2).final is (m.final2 if ds else m.final)


def test_pruned_output_equals_the_matching_head(rng):
    m = UNetPlusPlus(1, 1, filters=(2, 3, 4, 5), depth=3, deep_supervision=True).to(np.float64).eval()
    x = rng.standard_normal((1, 1, 16, 16))
    m.train()
    heads = m(x)
    m.eval()
    for L in (1, 2, 3):
        p = m.prune(L).train()
        np.testing.assert_allclose(p(x), heads[L - 1], atol=1e-12)


# ---------------------------------------------------------------- shapes

FULL_TRACE = "572→570→568→284→282→280→140→138→136→68→66→64→32→30→28→56→54→52→104→102→100→200→198→196→392→390→388"


def test_full_572_trace_without_running_convs():
    r = npunet.summary(UNet(1, 2, 64), (1, 1, 572, 572), print_fn=None)
    assert r["trace"] == FULL_TRACE
    assert r["output_shapes"] == [(1, 2, 388, 388)] and r["total_params"] == 31_030_658
    shapes = {row["name"]: row["shape"] for row in r["rows"]}
    assert shapes["down1"] == (1, 64, 568, 568) and shapes["down5"] == (1, 1024, 28, 28)
    assert shapes["up1"] == (1, 512, 52, 52) and shapes["up4"] == (1, 64, 388, 388)


def test_legal_sizes():
    sizes = valid_input_sizes(4, "valid", 700)
    assert sizes[:3] == [188, 204, 220] and 572 in sizes
    assert all((s - 124) % 16 == 0 for s in sizes)
    assert valid_input_sizes(4, "same", 100) == [16, 32, 48, 64, 80, 96]
    assert nearest_legal(570) == (556, 572)
    assert valid_input_sizes(2, "valid", 60) == [44, 48, 52, 56, 60]  # 4b + 28, b >= 4


@pytest.mark.parametrize("make,shape,out", [
    (lambda: UNet(1, 2, 4), (2, 1, 188, 204), (2, 2, 4, 20)),
    (lambda: UNet(1, 2, 4, depth=2), (1, 1, 44, 52), (1, 2, 4, 12)),
    (lambda: UNet(3, 3, 4, padding="same", up_mode="bilinear"), (1, 3, 48, 32), (1, 3, 48, 32)),
    (lambda: UNet(1, 2, 4, padding="same", block="residual", batch_norm=True), (2, 1, 32, 16), (2, 2, 32, 16)),
    (lambda: UNetPlusPlus(3, 2, filters=(4, 4, 4, 4, 4)), (1, 3, 32, 48), (1, 2, 32, 48)),
    (lambda: UNet3Plus(1, 1, filters=(2, 2, 2, 2, 2), cat_channels=2), (1, 1, 32, 16), (1, 1, 32, 16)),
])
def test_output_shapes(make, shape, out, rng):
    m = make()
    assert m(rng.standard_normal(shape).astype(np.float32)).shape == out
    assert tuple(npunet.summary(m, shape, print_fn=None)["output_shapes"][0]) == out


@pytest.mark.parametrize("make,shape,msg", [
    (lambda: UNet(1, 2, 4), (1, 1, 570, 572), r"UNet: input height 570 does not tile.*nearest: 556 or 572"),
    (lambda: UNet(1, 2, 4), (1, 1, 172, 188), r"height 172 does not tile.*decoder.*nearest: 156 or 188|height 172.*188"),
    (lambda: UNet(1, 2, 4, padding="same"), (1, 1, 40, 32), r"UNet: input height 40.*multiples of 16.*nearest: 32 or 48"),
    (lambda: UNetPlusPlus(1, 1, filters=(2, 2, 2, 2, 2)), (1, 1, 32, 33), r"UNetPlusPlus: input width 33"),
    (lambda: UNet3Plus(1, 1, filters=(2, 2, 2, 2, 2), cat_channels=2), (1, 1, 24, 32), r"UNet3Plus: input height 24"),
])
def test_illegal_sizes_fail_at_entry(make, shape, msg):
    m = make()
    with pytest.raises(ValueError, match=msg):
        m(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=msg):
        npunet.summary(m, shape, print_fn=None)


def test_wrong_channels_and_dtype_at_entry():
    with pytest.raises(ValueError, match=r"UNet: expected 1 channels.*got 3"):
        UNet(1, 2, 4)(np.zeros((1, 3, 188, 188), np.float32))
    with pytest.raises(TypeError, match=r"UNet: input dtype float64 does not match"):
        UNet(1, 2, 4)(np.zeros((1, 1, 188, 188)))


def test_memory_unetpp_more_than_unet():
    u = npunet.summary(UNet(3, 1, 32, padding="same", batch_norm=True, up_mode="bilinear"), (1, 3, 256, 256), print_fn=None)
    pp = npunet.summary(UNetPlusPlus(3, 1), (1, 3, 256, 256), print_fn=None)
    assert pp["activation_bytes"] > 1.5 * u["activation_bytes"]


def test_state_dict_names_read_like_the_papers():
    assert "down1.conv1.weight" in UNet(1, 2, 4).state_dict()
    assert "up1.up.weight" in UNet(1, 2, 4).state_dict()
    assert "x0_1.conv1.weight" in UNetPlusPlus(1, 1, filters=(2, 2, 2, 2, 2)).state_dict()
    sd = UNet3Plus(1, 1, filters=(2, 2, 2, 2, 2), cat_channels=2, deep_supervision=True, cgm=True).state_dict()
    for k in ("h1_PT_hd4.conv.weight", "hd5_UT_hd4.bn.running_var", "h4_Cat_hd4.conv.bias", "hd1.conv.weight",
              "outconv5.weight", "cls.1.weight"):
        assert k in sd, k


def test_float32_forward_of_the_full_572_unet():
    npunet.manual_seed(0)
    m = UNet(1, 2, 64)
    x = np.random.default_rng(0).standard_normal((1, 1, 572, 572)).astype(np.float32)
    y = m(x)
    assert y.shape == (1, 2, 388, 388) and y.dtype == np.float32 and np.isfinite(y).all()


# ---------------------------------------------------------------- whole-model gradient checks (float64)

def run_check(m, shape, rng, per_tensor):
    r = gradcheck(m.to(np.float64), rng.standard_normal(shape), max_per_tensor=per_tensor)
    assert r.max_rel_error <= MODEL_TOL, str(r)
    assert r.skipped <= 0.05 * (r.checked + r.skipped), str(r)  # kinks must stay rare
    return r


@pytest.mark.parametrize("kw,size", [
    (dict(padding="valid"), 44), (dict(padding="valid", batch_norm=True), 44),
    (dict(padding="same"), 8), (dict(padding="same", batch_norm=True, up_mode="bilinear"), 8),
    (dict(padding="valid", up_mode="bilinear"), 44), (dict(padding="valid", dropout=0.5), 44),
    (dict(padding="valid", block="residual", batch_norm=True), 44), (dict(padding="same", block="residual"), 8),
    (dict(padding="same", block="separable", batch_norm=True), 8), (dict(padding="valid", block="separable"), 44),
])
def test_unet_gradcheck(kw, size, rng):
    run_check(UNet(1, 2, base_channels=2, depth=2, **kw), (2, 1, size, size + 8), rng, 8)


@pytest.mark.parametrize("kw", [dict(), dict(up_mode="transpose", batch_norm=False), dict(deep_supervision=True),
                                dict(deep_supervision=True, up_mode="transpose")])
def test_unetpp_gradcheck(kw, rng):
    run_check(UNetPlusPlus(1, 2, filters=(2, 3, 4), depth=2, **kw), (2, 1, 8, 12), rng, 6)


def test_unetpp_gradcheck_eval_mean_of_heads(rng):
    m = UNetPlusPlus(1, 1, filters=(2, 3, 4), depth=2, deep_supervision=True).to(np.float64)
    m.eval()
    run_check(m, (1, 1, 8, 8), rng, 4)


@pytest.mark.parametrize("kw,train", [(dict(), True), (dict(deep_supervision=True), True),
                                      (dict(deep_supervision=True, cgm=True), True), (dict(cgm=True), False),
                                      (dict(batch_norm=False, cgm=True), True)])
def test_unet3plus_gradcheck(kw, train, rng):
    m = UNet3Plus(1, 1, filters=(2, 2, 3, 3, 4), cat_channels=2, **kw).train(train)
    run_check(m, (2, 1, 16, 16), rng, 2)


# ---------------------------------------------------------------- CGM

def test_cgm_multiplies_probabilities_not_logits():
    seg = np.full((2, 1, 4, 4), 3.0)
    cls = np.array([[0.9, 0.1], [0.2, 0.8]])  # image 0: organ absent, image 1: present
    p = apply_cgm(seg, cls)
    assert np.all(p[0] == 0) and np.allclose(p[1], 1 / (1 + np.exp(-3)))
    q = apply_cgm(seg, cls, multiply="logits")  # the authors' code
    assert np.allclose(q[0], 0.5)


def test_cgm_eval_output_is_zero_for_absent_class(rng):
    m = UNet3Plus(1, 1, filters=(2, 2, 2, 2, 2), cat_channels=2, cgm=True).eval()
    m.cls[1].bias.data[:] = [10, -10]  # force "absent"
    out = m(rng.standard_normal((1, 1, 16, 16)).astype(np.float32))
    assert out.shape == (1, 1, 16, 16) and not out.any()
