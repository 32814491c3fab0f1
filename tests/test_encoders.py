"""Encoder U-Nets (ResNet, MobileNetV2, EfficientNet encoders under SMP's U-Net decoder): parameter
counts and state_dict keys equal segmentation_models_pytorch 0.6's (a stored key list), gradients
checked against finite differences on both backends, the backends equal, safetensors both ways."""
import gzip
import json
import os

import numpy as np
import pytest

import npunet
from npunet import gradcheck, nn
from npunet.models import EncoderUNet
from npunet.models.encoder_unet import (BasicBlock, Conv2dStaticSamePadding, DecoderBlock, InvertedResidual,
                                        MBConvBlock)

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "smp_unet_state_dict_keys.json.gz")
with gzip.open(FIXTURE, "rt") as f:
    SMP_KEYS = json.load(f)["models"]


@pytest.mark.parametrize("name,count", [("resnet18", 14_328_209), ("resnet34", 24_436_369),
                                        ("mobilenet_v2", 6_628_945), ("efficientnet-b0", 6_251_469)])
def test_parameter_counts_and_keys_equal_smp(name, count):
    m = EncoderUNet(name)
    assert m.num_parameters() == count
    sd = m.state_dict()
    assert list(sd) == [k for k, _ in SMP_KEYS[name]] or set(sd) == {k for k, _ in SMP_KEYS[name]}
    assert {k: list(v.shape) for k, v in sd.items()} == {k: s for k, s in SMP_KEYS[name]}
    assert all(sd[k].dtype == np.int64 for k in sd if k.endswith("num_batches_tracked"))


def test_shallower_encoder_and_other_channels_equal_smp():
    m = EncoderUNet("resnet18", in_channels=1, num_classes=2, encoder_depth=3, decoder_channels=(64, 32, 16))
    assert {k: list(v.shape) for k, v in m.state_dict().items()} == {k: s for k, s in SMP_KEYS["resnet18_d3"]}
    assert m.num_parameters() == 11_371_426


# ---------------------------------------------------------------- gradient checks, both backends

@pytest.mark.usefixtures("each_backend")
@pytest.mark.parametrize("make,shape", [
    (lambda: BasicBlock(3, 4, 2), (2, 3, 7, 6)),
    (lambda: BasicBlock(4, 4, 1), (2, 4, 5, 5)),
    (lambda: InvertedResidual(4, 4, 1, 6), (2, 4, 6, 5)),
    (lambda: InvertedResidual(3, 5, 2, 1), (2, 3, 6, 6)),
    (lambda: MBConvBlock(4, 4, 3, 1, 6, 8), (2, 4, 8, 8)),
    (lambda: MBConvBlock(4, 6, 5, 2, 6, 8), (2, 4, 8, 8)),
    (lambda: Conv2dStaticSamePadding(3, 4, 3, 2, image_size=8), (2, 3, 8, 8)),
    (lambda: Conv2dStaticSamePadding(3, 3, 5, 2, groups=3, bias=False, image_size=8), (1, 3, 8, 8)),
], ids=["basic-down", "basic", "inverted-res", "inverted-s2", "mbconv-skip", "mbconv-k5s2", "same-k3s2", "same-dw-k5s2"])
def test_blocks_gradcheck(make, shape, rng):
    m = make().to(np.float64)
    r = gradcheck(m, rng.standard_normal(shape), max_per_tensor=12)
    assert r.max_rel_error <= 1e-6, str(r)
    assert r.skipped <= 0.05 * (r.checked + r.skipped), str(r)


@pytest.mark.usefixtures("each_backend")
def test_decoder_block_gradcheck(rng):
    m = DecoderBlock(3, 2, 4).to(np.float64)
    x, skip = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 2, 6, 8))

    class Wrap(nn.Module):  # gradcheck takes a module of several inputs
        def __init__(self):
            super().__init__()
            self.block = m

        def forward(self, a, b):
            return self.block(a, b)

        def backward(self, d):
            return self.block.backward(d)

    r = gradcheck(Wrap(), (x, skip), max_per_tensor=12)
    assert r.max_rel_error <= 1e-6, str(r)


@pytest.mark.parametrize("name,depth,dec,shape", [("resnet18", 2, (8, 4), (2, 3, 8, 12)),
                                                  ("mobilenet_v2", 2, (8, 4), (2, 3, 16, 16)),
                                                  ("efficientnet-b0", 2, (8, 4), (2, 3, 16, 16))])
def test_encoder_unet_gradcheck(name, depth, dec, shape, rng):
    m = EncoderUNet(name, encoder_depth=depth, decoder_channels=dec).to(np.float64)
    if name.startswith("efficientnet"):
        m.encoder.set_drop_connect_rate(0.0)
    r = gradcheck(m, rng.standard_normal(shape), max_per_tensor=2)
    assert r.max_rel_error <= 1e-5, str(r)
    assert r.skipped <= 0.05 * (r.checked + r.skipped), str(r)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet-b0"])
@pytest.mark.parametrize("train", [True, False])
def test_encoder_unets_agree_across_backends(name, train, rng):
    m = EncoderUNet(name, drop_connect_rate=0.0 if name.startswith("efficientnet") else None).to(np.float64)
    m.train(train)
    x = rng.standard_normal((2, 3, 64, 64))  # at 32^2 training BatchNorm averages 2 values at /32: ill-conditioned
    saved, res = m.state_dict(), {}
    for b in ("fast", "reference"):
        m.load_state_dict(saved)
        with npunet.backend(b):
            m.zero_grad()
            y = m(x)
            dx = m.backward(np.random.default_rng(3).standard_normal(y.shape))
            res[b] = (y, dx, {k: p.grad.copy() for k, p in m.named_parameters()}, m.state_dict())
    (yf, dxf, gf, sf), (yr, dxr, gr, sr) = res["fast"], res["reference"]
    assert np.abs(yf - yr).max() <= 1e-10 * np.abs(yr).max()
    assert np.abs(dxf - dxr).max() <= 1e-10 * np.abs(dxr).max()
    scale = max(np.abs(v).max() for v in gr.values())
    for k in gr:
        assert np.abs(gf[k] - gr[k]).max() <= 1e-9 * max(np.abs(gr[k]).max(), 1e-3 * scale), k
    for k in sr:
        np.testing.assert_allclose(sf[k], sr[k], rtol=1e-10, atol=1e-12, err_msg=k)


# ---------------------------------------------------------------- behaviour

def test_input_sizes_must_divide_by_the_output_stride():
    m = EncoderUNet("resnet18")
    with pytest.raises(ValueError, match=r"input 100x64 is not divisible by 32 \(2\^encoder_depth\); nearest legal "
                                         r"sizes: height 96 or 128, width 64"):
        m(np.zeros((1, 3, 100, 64), np.float32))
    m3 = EncoderUNet("resnet18", encoder_depth=3, decoder_channels=(16, 8, 4))
    assert m3(np.zeros((1, 3, 40, 24), np.float32)).shape == (1, 1, 40, 24)   # 8 divides them
    with pytest.raises(ValueError, match="expected 3 channels"):
        m(np.zeros((1, 1, 64, 64), np.float32))


@pytest.mark.parametrize("kw,msg", [
    (dict(encoder_name="resnet50"), "encoder_name must be one of 'resnet18', 'resnet34', 'mobilenet_v2', 'efficientnet-b0'"),
    (dict(encoder_name="resnet18", encoder_depth=4), "encoder_depth 4 needs 4 decoder_channels, got 5"),
    (dict(encoder_name="resnet18", encoder_depth=6, decoder_channels=(1,) * 6), "encoder_depth must be in 1..5"),
    (dict(encoder_name="resnet18", drop_connect_rate=0.1), "drop_connect_rate applies to EfficientNet encoders"),
])
def test_bad_arguments_are_named(kw, msg):
    with pytest.raises(ValueError) as e:
        EncoderUNet(**kw)
    assert msg in str(e.value)


def test_stochastic_depth_schedule_seed_and_eval(rng):
    npunet.manual_seed(4)
    m = EncoderUNet("efficientnet-b0", encoder_depth=2, decoder_channels=(8, 4)).to(np.float64)
    rates = [b._drop_connect.p for b in m.encoder._blocks if b.has_skip]
    assert rates == [0.2 * i / 16 for i, b in enumerate(m.encoder._blocks) if b.has_skip] and max(rates) > 0.15
    x = rng.standard_normal((4, 3, 8, 8))
    npunet.manual_seed(4)
    m2 = EncoderUNet("efficientnet-b0", encoder_depth=2, decoder_channels=(8, 4)).to(np.float64)
    np.testing.assert_array_equal(m(x), m2(x))            # seeded: the same drops
    m.eval()
    y_eval = m(x)
    m.encoder.set_drop_connect_rate(0.0)
    np.testing.assert_array_equal(m(x), y_eval)           # off in eval


def test_shallow_encoders_run_smps_overrun_stage_in_training(rng):
    m = EncoderUNet("mobilenet_v2", encoder_depth=3, decoder_channels=(8, 8, 4))
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    bn = m.encoder.features[7].conv[0][1]                 # past feature 3 (index 6): SMP still runs it
    deeper = m.encoder.features[14].conv[0][1]            # past the next feature: never run
    m.eval()
    m(x)
    assert int(bn.num_batches_tracked) == 0
    m.train()
    m(x)
    assert int(bn.num_batches_tracked) == 1 and int(deeper.num_batches_tracked) == 0


def test_safetensors_both_ways(tmp_path, rng):
    from safetensors.numpy import save_file
    m = EncoderUNet("mobilenet_v2", encoder_depth=2, decoder_channels=(8, 4))
    m.train()
    m(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))  # running statistics that are not the defaults
    path = tmp_path / "w.safetensors"
    m.save(path)
    state = npunet.io.load_state(path)
    assert set(state) == set(m.state_dict()) and state["encoder.features.0.1.num_batches_tracked"].dtype == np.int64
    npunet.manual_seed(9)
    m2 = EncoderUNet("mobilenet_v2", encoder_depth=2, decoder_channels=(8, 4)).load(path)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)
    # a file written by another tool, as safetensors.torch.save_file(model.state_dict()) writes one
    sd = {k: np.array(v, order="C") for k, v in m.state_dict().items()}
    bad = dict(sd)
    del bad["segmentation_head.0.bias"]
    bad["decoder.blocks.0.conv9.weight"] = np.zeros(3, np.float32)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(KeyError, match=r"1 missing keys \['segmentation_head.0.bias'\], 1 unexpected keys "
                                       r"\['decoder.blocks.0.conv9.weight'\]"):
        m2.load(tmp_path / "bad.safetensors")
    wrong = dict(sd, **{"segmentation_head.0.weight": np.zeros((1, 4, 1, 1), np.float32)})
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"'segmentation_head.0.weight' has shape \(1, 4, 1, 1\), the model expects \(1, 4, 3, 3\)"):
        m2.load(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read .* as a .safetensors file"):
        m2.load(tmp_path / "junk.safetensors")
