"""Pretrained encoder weights: timm / torchvision / efficientnet_pytorch key names (a stored list of the
real models' state_dict names and shapes, no weights) map onto SMP's encoder names; bad files are
named; the ImageNet normalisation is recorded and applied.  (A private comparison loaded the same
files into SMP's Unet: outputs equal to 1e-14 in float64.)"""
import gzip
import json
import os

import numpy as np
import pytest

import npunet
from npunet.io import save_safetensors
from npunet.models import EncoderUNet, load_encoder_weights
from npunet.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, map_keys

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "pretrained_encoder_keys.json.gz")
with gzip.open(FIXTURE, "rt") as f:
    KEYS = json.load(f)["models"]


def _file(tmp_path, source, drop=(), reshape=None):
    """A .safetensors file with the source model's names and shapes; every tensor holds its own index."""
    arrays = {}
    for i, (k, shape) in enumerate(KEYS[source]):
        if k in drop:
            continue
        shape = reshape.get(k, shape) if reshape else shape
        arrays[k] = np.full(shape, i, np.int64) if k.endswith("num_batches_tracked") else \
            np.full(shape, i / 1000, np.float32)
    path = tmp_path / (source.replace("/", "_") + ".safetensors")
    save_safetensors(path, arrays)
    return path, {k: i for i, (k, _) in enumerate(KEYS[source])}


@pytest.mark.parametrize("source,name", [("torchvision/resnet18", "resnet18"), ("timm/resnet18", "resnet18"),
                                         ("torchvision/mobilenet_v2", "mobilenet_v2"),
                                         ("timm/mobilenet_v2", "mobilenet_v2"),
                                         ("efficientnet_pytorch/efficientnet-b0", "efficientnet-b0")])
def test_every_encoder_tensor_comes_from_its_mapped_key(source, name, tmp_path):
    path, index = _file(tmp_path, source)
    notes = []
    m = EncoderUNet(name, encoder_depth=3, decoder_channels=(16, 8, 4))
    load_encoder_weights(m, path, log=notes.append)
    mapped, skipped, unknown = map_keys(name, list(index))
    assert not unknown and len(skipped) == 2 and "skipped the ImageNet classifier" in notes[0]
    enc = m.encoder.state_dict()
    assert set(mapped.values()) == set(enc)                 # every encoder tensor, once
    for src, dst in mapped.items():
        want = index[src] if dst.endswith("num_batches_tracked") else np.float32(index[src] / 1000)
        assert (enc[dst] == want).all(), (src, dst)
    assert m.input_norm["mean"] == list(IMAGENET_MEAN) and m.input_norm["std"] == list(IMAGENET_STD)


def test_timm_mobilenet_blocks_map_to_torchvision_features():
    mapped, _, _ = map_keys("mobilenet_v2", [k for k, _ in KEYS["timm/mobilenet_v2"]])
    assert mapped["blocks.0.0.conv_pw.weight"] == "features.1.conv.1.weight"
    assert mapped["blocks.1.1.conv_dw.weight"] == "features.3.conv.1.0.weight"
    assert mapped["blocks.6.0.conv_pwl.weight"] == "features.17.conv.2.weight"
    assert mapped["bn2.running_var"] == "features.18.1.running_var"


def test_bad_files_are_named(tmp_path):
    m = EncoderUNet("resnet18", encoder_depth=3, decoder_channels=(16, 8, 4))
    path, _ = _file(tmp_path, "torchvision/resnet18", drop={"layer2.0.conv1.weight"})
    with pytest.raises(KeyError, match=r"1 missing keys \['layer2.0.conv1.weight'\], 0 unexpected"):
        load_encoder_weights(m, path)
    path, _ = _file(tmp_path, "torchvision/mobilenet_v2")
    with pytest.raises(KeyError, match="does not fit the resnet18 encoder: .* unexpected keys .*features"):
        load_encoder_weights(m, path)
    path, _ = _file(tmp_path, "torchvision/resnet18", reshape={"layer1.0.conv2.weight": [64, 64, 1, 1]})
    with pytest.raises(ValueError, match=r"'layer1.0.conv2.weight' in .* has shape \(64, 64, 1, 1\), the resnet18 "
                                         r"encoder's 'layer1.0.conv2.weight' \(64, 64, 3, 3\)"):
        load_encoder_weights(m, path)
    pth = tmp_path / "resnet18-f37072fd.pth"
    pth.write_bytes(b"\x80\x02not to be unpickled")
    with pytest.raises(ValueError, match=r"pickle file, which npunet never loads .*torch.load\('.*resnet18-f37072fd.pth', "
                                         r"weights_only=True\)"):
        load_encoder_weights(m, pth)
    with pytest.raises(ValueError, match=r"npunet never downloads.*huggingface.co/timm/resnet34"):
        EncoderUNet("resnet34", encoder_weights="imagenet")
    with pytest.raises(FileNotFoundError, match="no file .*nothere.safetensors"):
        load_encoder_weights(m, tmp_path / "nothere.safetensors")


def test_smp_argument_names():
    assert EncoderUNet("resnet18", classes=3, encoder_depth=3, decoder_channels=(16, 8, 4), activation=None).num_classes == 3
    assert EncoderUNet("resnet18", classes=2, num_classes=2, encoder_depth=3, decoder_channels=(16, 8, 4)).num_classes == 2
    with pytest.raises(ValueError, match="classes=3 and num_classes=2 disagree"):
        EncoderUNet("resnet18", num_classes=2, classes=3)
    with pytest.raises(ValueError, match="activation='sigmoid': npunet's models return logits"):
        EncoderUNet("resnet18", activation="sigmoid")


def test_one_channel_input_sums_the_rgb_filters_and_normalisation_is_applied(tmp_path, rng):
    path, index = _file(tmp_path, "torchvision/resnet18")
    m = EncoderUNet("resnet18", in_channels=1, encoder_depth=3, decoder_channels=(16, 8, 4), encoder_weights=path)
    assert m.encoder.conv1.weight.shape == (64, 1, 7, 7)
    np.testing.assert_allclose(m.encoder.conv1.weight.data, 3 * index["conv1.weight"] / 1000, rtol=1e-6)
    assert m.input_norm["mean"] == [pytest.approx(np.mean(IMAGENET_MEAN))]
    from npunet.data.tiling import predict_images
    m.eval()
    x = rng.random((1, 1, 32, 32)).astype(np.float32)
    seen = []
    orig = m.forward
    m.forward = lambda a: (seen.append(a.copy()), orig(a))[1]
    predict_images(m, x)
    np.testing.assert_allclose(seen[0], (x - np.mean(IMAGENET_MEAN)) / np.mean(IMAGENET_STD), rtol=1e-6, atol=1e-6)


def test_trainer_normalises_and_checkpoints_keep_the_record(tmp_path, rng):
    from npunet import data as D, losses, optim
    from npunet.train import Trainer, load_model
    m = EncoderUNet("resnet18", in_channels=1, encoder_depth=2, decoder_channels=(8, 4))
    m.input_norm = {"mean": [0.5], "std": [0.25], "source": "test"}
    m.encoder.requires_grad_(False)
    x, lab, masks = D.make_cells(2, 32, seed=1)
    loader = D.DataLoader(D.SegmentationDataset(x, masks, lab, weight_map=False), batch_size=2, seed=0)
    seen = []
    orig = m.forward
    object.__setattr__(m, "forward", lambda a: (seen.append(a.copy()), orig(a))[1])
    t = Trainer(m, losses.BCEWithLogitsLoss(), optim.Adam(m.parameters(), 1e-3), loader, progress=False, log=None)
    batch = next(iter(loader.iterate(0, 0)))
    t.train_step(batch)
    np.testing.assert_allclose(seen[0], (batch["image"] - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    t.save(tmp_path / "ck.npz")
    m2, meta = load_model(tmp_path / "ck.npz")
    assert m2.input_norm == m.input_norm and meta["input_norm"]["source"] == "test"
