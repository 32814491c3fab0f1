"""PyTorch's idioms on npunet modules: no_grad / inference_mode, frozen parameters (no gradient, no
update, weight-gradient GEMMs skipped, input gradient unchanged), traversal, dtype helpers, and one
clear line for what npunet does not do."""
import numpy as np
import pytest

import npunet
from npunet import losses, nn, optim
from npunet.backends import fast, reference
from npunet.models import EncoderUNet, UNet


def test_no_grad_keeps_no_cache_and_backward_names_the_layer(rng):
    m = UNet(1, 2, base_channels=4, depth=2, padding="same")
    x = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    y = m(x)
    with npunet.no_grad():
        assert not npunet.is_grad_enabled()
        y2 = m(x)
    assert npunet.is_grad_enabled()
    np.testing.assert_array_equal(y, y2)
    assert all(mod._cache is None or not isinstance(mod._cache, tuple) for mod in m.modules())
    with pytest.raises(RuntimeError, match=r"Conv2d\('outc'\): backward\(\) after a forward run under "
                                           r"npunet.no_grad\(\)"):
        m.backward(np.ones_like(y))
    with npunet.inference_mode():      # the alias
        m(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        m.backward(np.ones_like(y))
    m(x)                               # outside the block: training works again
    m.backward(np.ones_like(y))


def test_predict_runs_under_no_grad(rng):
    from npunet.data.tiling import predict_images
    m = UNet(1, 2, base_channels=2, depth=2, padding="same")
    seen = []
    orig = m.forward
    m.forward = lambda x: (seen.append(npunet.is_grad_enabled()), orig(x))[1]
    predict_images(m, rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    assert seen and not any(seen) and m.training


@pytest.mark.parametrize("backend_name", ["fast", "reference"])
def test_frozen_conv_input_grad_unchanged_and_weight_grad_skipped(backend_name, rng, monkeypatch):
    calls = []
    monkeypatch.setattr(reference, "_conv_weight_grad", lambda *a, _f=reference._conv_weight_grad: (calls.append(1), _f(*a))[1])
    # each fast conv path: im2col tiles, Winograd, 1x1, small maps, depthwise; transposed: disjoint and tiled
    cases = [(nn.Conv2d(3, 4, 3, padding=1), (2, 3, 12, 12)), (nn.Conv2d(16, 8, 3, padding=1), (2, 16, 24, 24)),
             (nn.Conv2d(3, 5, 1), (2, 3, 6, 6)), (nn.Conv2d(8, 8, 3, stride=2, padding=1), (1, 8, 4, 4)),
             (nn.Conv2d(4, 4, 3, padding=1, groups=4), (2, 4, 8, 8)), (nn.ConvTranspose2d(4, 3, 2, stride=2), (2, 4, 5, 5)),
             (nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1), (2, 4, 5, 5))]
    with npunet.backend(backend_name):
        for layer, shape in cases:
            x = rng.standard_normal(shape).astype(np.float32)
            y = layer(x)
            g = rng.standard_normal(y.shape).astype(np.float32)
            dx = layer.backward(g)
            w0 = layer.weight.grad.copy()
            layer.zero_grad()
            layer.weight.requires_grad = False
            n = len(calls)
            layer(x)
            dx2 = layer.backward(g)
            np.testing.assert_array_equal(dx, dx2)
            np.testing.assert_array_equal(layer.weight.grad, 0)     # nothing added
            assert np.abs(w0).max() > 0
            np.testing.assert_allclose(layer.bias.grad, g.sum(axis=(0, 2, 3)), rtol=1e-5)  # the bias still trains
            if backend_name == "reference":
                assert len(calls) == n                              # the dW GEMM did not run
    cache = fast.conv2d_forward(rng.standard_normal((2, 16, 24, 24)).astype(np.float32),
                                rng.standard_normal((8, 16, 3, 3)).astype(np.float32))[1]
    assert fast.conv2d_backward(np.ones((2, 8, 24, 24), np.float32), cache, weight_grad=False)[1:] == (None, None)


def test_frozen_encoder_bit_identical_after_training_decoder_moves(rng):
    m = EncoderUNet("resnet18", in_channels=1, encoder_depth=3, decoder_channels=(16, 8, 4))
    assert m.encoder.requires_grad_(False) is m.encoder
    assert all(not p.requires_grad for p in m.encoder.parameters())
    assert all(p.requires_grad for p in m.decoder.parameters())
    enc0 = {k: v.copy() for k, v in m.encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
    dec0 = {k: v.copy() for k, v in m.decoder.state_dict().items()}
    opt = optim.AdamW(m.parameters(), lr=1e-2)
    loss = losses.BCEWithLogitsLoss()
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    t = (rng.random((2, 1, 32, 32)) > 0.5).astype(np.float32)
    for _ in range(2):
        opt.zero_grad()
        loss.forward(m(x), t)
        m.backward(loss.backward())
        opt.step()
    enc = m.encoder.state_dict()
    for k, v in enc0.items():
        np.testing.assert_array_equal(enc[k], v)
    assert all(p.grad is None for p in m.encoder.parameters())          # PyTorch: frozen params have no .grad
    assert any(not np.array_equal(v, m.decoder.state_dict()[k]) for k, v in dec0.items())
    m.requires_grad_(True)
    assert all(p.requires_grad for p in m.parameters())


def test_traversal_apply_and_dtype_helpers():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1)))
    assert [n for n, _ in m.named_modules()] == ["", "0", "1", "1.0", "1.1"]
    assert len(list(m.modules())) == 5 and len(list(m.children())) == 2
    order = []
    assert m.apply(lambda mod: order.append(type(mod).__name__)) is m
    assert order == ["Conv2d", "ReLU", "Conv2d", "Sequential", "Sequential"]   # children first, as PyTorch
    assert m.double().dtype == np.float64 and m[0].weight.grad.dtype == np.float64
    assert m.float().dtype == np.float32
    assert m.to("cpu") is m and m.cpu() is m


@pytest.mark.parametrize("call,msg", [
    (lambda m: m.cuda(), r"Sequential.cuda\(\): npunet runs on the CPU only"),
    (lambda m: m.to("cuda:0"), r'Sequential.to\("cuda:0"\): npunet runs on the CPU only'),
    (lambda m: m.register_forward_hook(print), "Sequential.register_forward_hook: not in npunet; .*npunet.summary"),
    (lambda m: m.half(), r"float32 or float64 only; use .float\(\)"),
    (lambda m: m.compile(), "no compiler"),
])
def test_pytorch_only_calls_answer_with_npuents_way(call, msg):
    with pytest.raises((RuntimeError, AttributeError, TypeError), match=msg):
        call(nn.Sequential(nn.ReLU()))
    with pytest.raises(AttributeError, match="'Sequential' object has no attribute 'nonsense'"):
        nn.Sequential().nonsense


# ---------------------------------------------------------------- Conv2d and activations: PyTorch's signatures

TOL = 1e-6


@pytest.mark.parametrize("kw,shape,out_hw", [
    (dict(kernel_size=3, padding="same"), (2, 2, 5, 6), (5, 6)),
    (dict(kernel_size=4, padding="same"), (1, 2, 5, 6), (5, 6)),                 # asymmetric: one more bottom/right
    (dict(kernel_size=(2, 3), padding="same", padding_mode="reflect"), (1, 2, 5, 4), (5, 4)),
    (dict(kernel_size=3, padding=2, padding_mode="replicate"), (2, 2, 4, 3), (6, 5)),
    (dict(kernel_size=3, padding=(1, 2), padding_mode="circular"), (1, 2, 4, 5), (4, 7)),
    (dict(kernel_size=3, padding=1, padding_mode="reflect", stride=2), (1, 2, 7, 6), (4, 3)),
    (dict(kernel_size=3, padding="valid"), (1, 2, 5, 6), (3, 4)),
])
def test_conv_padding_modes_gradcheck_both_backends(kw, shape, out_hw, each_backend, rng):
    m = nn.Conv2d(2, 3, **kw).to(np.float64)
    x = rng.standard_normal(shape)
    y = m(x)
    assert y.shape[2:] == out_hw
    r = npunet.gradcheck(m, x)
    assert r.max_rel_error <= TOL, r


def test_pad_modes_by_hand():
    from npunet.backends import reference as R
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    assert R.pad2d_forward(x, (3, 2, 0, 0), "reflect")[0].ravel().tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert R.pad2d_forward(x, (2, 1, 0, 0), "replicate")[0].ravel().tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert R.pad2d_forward(x, (1, 2, 0, 0), "circular")[0].ravel().tolist() == [3, 0, 1, 2, 3, 0, 1]
    out, cache = R.pad2d_forward(x, (3, 2, 0, 0), "reflect")
    # input 1 is copied to padded positions 2, 4 and 8: its gradient sums theirs
    assert R.pad2d_backward(np.arange(9.0).reshape(1, 1, 1, 9), cache).ravel().tolist() == [3, 2 + 4 + 8, 1 + 5 + 7, 0 + 6]


def test_conv_signature_errors_and_activations_inplace(rng):
    with pytest.raises(ValueError, match="dilation=2 is not implemented in npunet"):
        nn.Conv2d(1, 1, 3, dilation=2)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'same' or 'valid'"):
        nn.Conv2d(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="reflect padding .* needs an input larger"):
        nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(np.zeros((1, 1, 3, 3), np.float32))
    assert nn.Conv2d(3, 8, 3, padding="same").padding == (1, 1)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x0 = x.copy()
    for cls in (nn.ReLU, nn.layers.ReLU6, nn.layers.SiLU):
        a, b = cls(inplace=True), cls()
        np.testing.assert_array_equal(a(x), b(x))
        np.testing.assert_array_equal(x, x0)          # npunet never writes into the input
