"""Bad input answered clearly, run folders safe: configs, the command line, predict, edge cases.
Every case asserts the error type and what the message says (or the correct behaviour)."""
import json
import os
import warnings

import numpy as np
import pytest

import npunet
from npunet import losses as L
from npunet import models, nn
from npunet.cli import main
from npunet.config import ConfigError, defaults, describe, merge

TINY = {"n_train": 4, "n_val": 2, "size": 32, "batch_size": 2, "epochs": 1,
        "model_config": {"base_channels": 2, "depth": 2}}


# ---------------------------------------------------------------- the training config

@pytest.mark.parametrize("user,msg", [
    ({"epochs": "3"}, "config key 'epochs': expected integer in [1, 1000000], got \"3\" (a string)"),
    ({"epochs": -1}, "config key 'epochs': expected integer in [1, 1000000], got -1"),
    ({"epochs": 2.5}, "config key 'epochs': expected integer in [1, 1000000], got 2.5"),
    ({"lr": "fast"}, "config key 'lr': expected number in [1e-12, 10], got \"fast\" (a string)"),
    ({"lr": 0}, "config key 'lr': expected number in [1e-12, 10], got 0"),
    ({"schedule": "linear"}, "config key 'schedule': expected one of 'cosine', 'step', 'multistep', 'plateau', 'onecycle', 'none', got \"linear\""),
    ({"n_val": 0}, "config key 'n_val': expected integer in [1, 100000], got 0"),
    ({"optimizer": "adamm"}, "config key 'optimizer': expected one of 'adam', 'adamw', 'sgd', got \"adamm\" (a string); did you mean 'adam'?"),
    ({"optimizer": "Adam"}, "did you mean 'adam'?"),
    ({"weight_map": 1}, "config key 'weight_map': expected true/false, got 1"),
    ({"momentum": 1.0}, "config key 'momentum': expected number in [0, 1), got 1.0"),
    ({"model": "ResUNet"}, "config key 'model': expected one of 'UNet', 'UNetPlusPlus', 'UNet3Plus'"),
    ({"augment": {"elastic": 0.5}}, "config key 'augment': unknown key 'elastic' (did you mean 'elastic_p'?)"),
    ({"augment": {"elastic_p": 2}}, "config key 'augment.elastic_p': expected number in [0, 1], got 2"),
    ({"model_config": [1, 2]}, "config key 'model_config': expected an object of key: value pairs, got a list"),
    ({"data": "no/such/file.npz"}, "config key 'data': expected a folder with images/ and masks/"),
    ([1, 2, 3], "the config must be a JSON object of key: value pairs, got a list"),
    ({"lrate": 0.1}, "config: unknown key 'lrate' (did you mean 'lr'?)"),
])
def test_bad_config_values_are_named(user, msg):
    with pytest.raises(ConfigError) as e:
        merge(user)
    assert msg in str(e.value)


def test_nested_dicts_merge_into_the_defaults():
    cfg = merge({"model_config": {"base_channels": 4}, "augment": {"elastic_p": 0.0}})
    assert cfg["model_config"] == dict(defaults()["model_config"], base_channels=4)  # still padded, depth 3
    assert cfg["augment"] == dict(defaults()["augment"], elastic_p=0.0)
    other = merge({"model": "UNet3Plus", "model_config": {"cat_channels": 4}})  # that model's own defaults
    assert other["model_config"]["filters"] == [8, 16, 32, 64, 128] and other["model_config"]["cat_channels"] == 4


def test_model_config_is_checked_by_the_model():
    from npunet.runs import build_run
    with pytest.raises(TypeError, match=r"UNet: base_channels must be an integer >= 1, got '8' \(str\)"):
        build_run(merge(dict(TINY, model_config={"base_channels": "8"})))
    with pytest.raises(ConfigError, match=r"unknown key 'base' \(did you mean 'base_channels'\?\)"):
        build_run(merge(dict(TINY, model_config={"base": 8})))


@pytest.mark.parametrize("make,err,msg", [
    (lambda: models.UNet(base_channels="4"), TypeError, "UNet: base_channels must be an integer >= 1, got '4' (str)"),
    (lambda: models.UNet(base_channels=4.5), TypeError, "UNet: base_channels must be an integer >= 1, got 4.5 (float)"),
    (lambda: models.UNet(depth=0), ValueError, "UNet: depth must be an integer >= 1, got 0"),
    (lambda: models.UNet(batch_norm="yes"), TypeError, "UNet: batch_norm must be True or False"),
    (lambda: models.UNetPlusPlus(filters=(8, "16", 32)), TypeError, "UNetPlusPlus: filters[1] must be an integer"),
    (lambda: models.UNet3Plus(filters=(8, 16, 32)), ValueError, "UNet3Plus: filters must have 5 entries"),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d: in_channels and out_channels must be >= 1, got 0 and 4"),
    (lambda: nn.Conv2d(3.0, 4, 3), TypeError, "Conv2d: in_channels must be an integer, got 3.0 (float)"),
])
def test_constructors_validate_their_arguments(make, err, msg):
    with pytest.raises(err) as e:
        make()
    assert msg in str(e.value)


def test_help_config_documents_every_key(capsys):
    main(["train", "--help-config"])
    out = capsys.readouterr().out
    assert out == describe() + "\n"
    for k in defaults():
        assert f"  {k} " in out
    assert "elastic_p" in out and "[0, 1]" in out and "'cosine', 'step', 'multistep', 'plateau', 'onecycle', 'none'" in out


# ---------------------------------------------------------------- run folders

def _train(tmp_path, cfg, *flags):
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.json')))}.json"
    path.write_text(json.dumps(cfg))
    main(["train", "--config", str(path), "--out", str(tmp_path / "run"), *flags])


def _meta(tmp_path):
    from npunet.io import load_npz
    return json.loads(str(load_npz(tmp_path / "run" / "checkpoint.npz")["meta"]))


def test_run_folders_refuse_resume_and_force(tmp_path, capsys):
    _train(tmp_path, TINY)
    ck = tmp_path / "run" / "checkpoint.npz"
    assert (ck.stat().st_mode & 0o777) == 0o666 & ~_umask()   # the user's normal mode, not mkstemp's 0600
    before = ck.read_bytes()
    with pytest.raises(SystemExit, match="already holds a run .* --resume, or start over with --force"):
        _train(tmp_path, TINY)
    assert ck.read_bytes() == before                            # nothing overwritten
    capsys.readouterr()
    _train(tmp_path, dict(TINY, lr=0.01, epochs=2), "--resume")
    err, out = capsys.readouterr().err, _meta(tmp_path)
    assert "differs from the checkpoint's in lr (checkpoint 0.003, config 0.01)" in err
    assert "continues with the checkpoint's values" in err
    assert out["epoch"] == 2 and out["config"]["lr"] == 0.003 and out["optimizer"]["lr"] < 0.003
    _train(tmp_path, dict(TINY, lr=0.01), "--force")
    meta = _meta(tmp_path)
    assert meta["epoch"] == 1 and meta["config"]["lr"] == 0.01
    with pytest.raises(SystemExit, match="give one"):
        _train(tmp_path, TINY, "--resume", "--force")


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_interrupted_saves_leave_no_temp_files(tmp_path):
    from npunet.io import load_npz, save_npz
    target = tmp_path / "checkpoint.npz"
    stale = tmp_path / ".checkpoint.npz.tmp-abc123"        # what a killed save leaves behind
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.npz.tmp-x"                   # another file's temp: not ours to delete
    other.write_bytes(b"x")
    save_npz(target, {"a": np.arange(3)})
    assert not stale.exists() and other.exists()
    assert load_npz(target)["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.tmp-x", "checkpoint.npz"]


# ---------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A 1-channel run on synthetic cells and a 3-channel run from an .npz data file."""
    from npunet.data import make_cells
    root = tmp_path_factory.mktemp("runs")
    cfg1 = root / "one.json"
    cfg1.write_text(json.dumps(TINY))
    main(["train", "--config", str(cfg1), "--out", str(root / "one")])
    x, lab, m = make_cells(6, 32, seed=1)
    np.savez(root / "rgb.npz", images=np.repeat(x, 3, axis=1), masks=m, labels=lab)
    cfg3 = root / "three.json"
    cfg3.write_text(json.dumps(dict(TINY, data=str(root / "rgb.npz"), model_config={"in_channels": 3, "base_channels": 2,
                                                                                    "depth": 2})))
    main(["train", "--config", str(cfg3), "--out", str(root / "three")])
    return root / "one" / "checkpoint.npz", root / "three" / "checkpoint.npz"


def _predict(ck, path, tmp_path, name):
    from PIL import Image
    out = tmp_path / f"pred_{name}"
    main(["predict", "--checkpoint", str(ck), "--input", str(path), "--out", str(out), "--quiet"])
    return np.asarray(Image.open(out / (os.path.splitext(os.path.basename(str(path)))[0] + ".png")))


def test_png_and_npy_of_one_image_give_one_mask(checkpoints, tmp_path):
    from PIL import Image
    from npunet.data import make_cells
    x = make_cells(1, 32, seed=5)[0][0, 0]
    u8 = np.round((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)   # the picture as a 0..255 file
    Image.fromarray(u8).save(tmp_path / "img.png")
    np.save(tmp_path / "img_u8.npy", u8)
    np.save(tmp_path / "img_f.npy", u8.astype(np.float64))                       # the same values as floats
    masks = [_predict(checkpoints[0], tmp_path / f, tmp_path, f.split(".")[0]) for f in ("img.png", "img_u8.npy", "img_f.npy")]
    assert (masks[0] == masks[1]).all() and (masks[0] == masks[2]).all()
    from npunet.runs import input_range
    meta_range = json.loads(str(np.load(checkpoints[0])["meta"]))["input_range"]
    assert meta_range == input_range(make_cells(6, 32, seed=0)[0][:4])           # the training images' range


def test_rgb_image_into_a_three_channel_model(checkpoints, tmp_path, capsys):
    from PIL import Image
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    mask = _predict(checkpoints[1], tmp_path / "rgb.png", tmp_path, "rgb")
    assert mask.shape == (32, 32)
    np.save(tmp_path / "rgb_last.npy", rgb)
    _predict(checkpoints[1], tmp_path / "rgb_last.npy", tmp_path, "rgb_last")
    assert "channel-last (H, W, 3) .npy images read as (3, H, W)" in capsys.readouterr().out
    _predict(checkpoints[0], tmp_path / "rgb.png", tmp_path, "grey")            # RGB into a 1-channel model
    assert "RGB averaged to grey for a 1-channel model" in capsys.readouterr().out


@pytest.mark.parametrize("array,msg", [
    (np.zeros(10), "array of shape (10,); expected an image (H, W), (C, H, W) or channel-last (H, W, C)"),
    (np.zeros((2, 1, 16, 16)), "array of shape (2, 1, 16, 16); expected an image"),
    (np.zeros((5, 16, 16)), "array of shape (5, 16, 16); expected an image"),
    (np.array([["a", "b"], ["c", "d"]]), "holds <U1 values; expected a numeric image"),
    (np.full((16, 16), np.nan), "contains NaN/Inf values"),
])
def test_predict_rejects_arrays_it_cannot_read(checkpoints, tmp_path, array, msg):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(SystemExit) as e:
        main(["predict", "--checkpoint", str(checkpoints[0]), "--input", str(tmp_path / "bad.npy"),
              "--out", str(tmp_path / "p")])
    assert msg in str(e.value)


def test_predict_accepts_one_image_with_a_batch_axis(checkpoints, tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.random.default_rng(0).random((1, 1, 24, 24)))
    main(["predict", "--checkpoint", str(checkpoints[0]), "--input", str(tmp_path / "one.npy"), "--out",
          str(tmp_path / "p"), "--quiet"])
    assert "dropped the batch axis of (1, C, H, W)" in capsys.readouterr().out


def test_summary_honours_depth_and_base_for_every_model(capsys):
    main(["summary", "--model", "unetpp", "--base", "8", "--depth", "2", "--size", "32"])
    out = capsys.readouterr().out
    assert "x2_0" in out and "x3_0" not in out and "(1, 32, 8, 8)" in out
    main(["summary", "--model", "unet3plus", "--base", "8", "--size", "32"])
    assert "(1, 40, 32, 32)" in capsys.readouterr().out          # hd1: 5 x 8 channels
    with pytest.raises(SystemExit, match="five levels"):
        main(["summary", "--model", "unet3plus", "--depth", "3"])


# ---------------------------------------------------------------- remaining edge cases

def test_losses_refuse_an_empty_batch():
    for loss, y in [(L.CrossEntropyLoss(), np.zeros((0, 4, 4), int)), (L.DiceLoss(), np.zeros((0, 1, 4, 4)))]:
        with pytest.raises(ValueError, match=r"empty logits \(0, .*a batch of 0 images"):
            loss.forward(np.zeros((0, 2 if isinstance(loss, L.CrossEntropyLoss) else 1, 4, 4)), y)


def test_region_losses_refuse_smooth_zero():
    for cls in (L.DiceLoss, L.IoULoss):
        with pytest.raises(ValueError, match=f"{cls.__name__}: smooth must be > 0"):
            cls(smooth=0)


def test_probability_warning_only_for_probabilities(rng):
    net = models.UNet(1, 1, base_channels=4, depth=2, padding="same")
    z = net(rng.random((2, 1, 16, 16)).astype(np.float32))
    z = (z - z.min()) / (z.max() - z.min()) * 0.3 + 0.1        # a fresh net's narrow band, inside [0, 1]
    y = (rng.random(z.shape) > 0.5).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.BCEWithLogitsLoss().forward(z.astype(np.float32), y)
    with pytest.warns(UserWarning, match="expects raw logits"):
        L.BCEWithLogitsLoss().forward(np.clip(rng.random(z.shape), 0.01, 0.99).astype(np.float32), y)
    with pytest.warns(UserWarning, match="expects raw logits"):
        p = rng.random((2, 3, 4, 4))
        L.CrossEntropyLoss().forward(p / p.sum(axis=1, keepdims=True), rng.integers(0, 3, (2, 4, 4)))


def test_load_state_dict_refuses_nan_and_object_arrays():
    m = nn.Conv2d(1, 2, 3)
    sd = m.state_dict()
    sd["weight"] = sd["weight"].copy()
    sd["weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'weight' contains 1 NaN/Inf value"):
        m.load_state_dict(sd)
    sd["weight"] = np.empty((2, 1, 3, 3), object)
    with pytest.raises(TypeError, match="'weight' holds object values"):
        m.load_state_dict(sd)
    assert np.isfinite(m.weight.data).all()


def test_divergence_in_validation_is_reported_like_training(tmp_path):
    from npunet.runs import build_run
    t = build_run(merge(dict(TINY, out=str(tmp_path / "run"))), progress=False, log=None)
    t.fit(1)
    t.model.down1.bn1.running_var[:] = -1.0                     # eval-mode BN now produces NaN
    with pytest.raises(FloatingPointError) as e:
        t._end_epoch([0.5], 1.0)
    msg = str(e.value)
    assert "training diverged at step 2 (epoch 2, batch 0), first seen in validation" in msg
    assert "NaN/Inf" in msg and "Lower the learning rate (now" in msg and "last good checkpoint" in msg
    assert len(msg.splitlines()) == 1


def test_nan_in_training_data_is_a_data_problem():
    from npunet.data import SegmentationDataset, make_cells
    x, lab, m = make_cells(3, 16, seed=0)
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN/Inf values in image\(s\) \[1\]: a data problem"):
        SegmentationDataset(x, m, lab)


def test_layers_that_cannot_cover_their_input(rng):
    with pytest.raises(ValueError, match=r"Upsample\('up'\): scale_factor \(0.01, 0.01\) turns the 8x8 input into an empty 0x0"):
        s = nn.Sequential(nn.Identity())
        s.up = nn.Upsample(scale_factor=0.01)
        s.up(rng.random((1, 1, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="Upsample: scale_factor must be > 0"):
        nn.Upsample(scale_factor=0)


def test_second_backward_is_refused_for_a_layer():
    conv = nn.Conv2d(1, 2, 3)
    y = conv(np.ones((1, 1, 5, 5), np.float32))
    conv.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="backward\\(\\) called a second time after one forward\\(\\)"):
        conv.backward(np.ones_like(y))
    assert npunet.get_backend() == "fast"
