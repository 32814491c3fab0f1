"""Your own images end to end: folder and TIFF-stack layouts, every image and mask format, the class
mapping, bad data named by file, one normalisation from training to predict, multi-class training,
predict on folders, tiling, the loader's epochs and exact resume.  Small files written with Pillow."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import npunet
from npunet.cli import main
from npunet.data.files import DataError, load_folder

SMALL = {"model_config": {"base_channels": 4, "depth": 2}, "augment": {"elastic_p": 0.0}, "epochs": 1}


def _cells(n=6, size=32, seed=1):
    from npunet.data import make_cells
    x, lab, m = make_cells(n, size, seed=seed)
    g = ((x[:, 0] - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
    return g, m


def _binary_folder(root, n=6, size=32, rgb=False, mask_suffix="_mask", img="images", msk="masks"):
    g, m = _cells(n, size)
    os.makedirs(root / img)
    os.makedirs(root / msk)
    for i in range(n):
        pic = np.stack([g[i], g[i] // 2, 255 - g[i]], -1) if rgb else g[i]
        Image.fromarray(pic).save(root / img / f"c{i}.png")
        Image.fromarray(m[i] * 255).save(root / msk / f"c{i}{mask_suffix}.png")
    return g, m


def _write_config(path, cfg):
    path.write_text(json.dumps(cfg))
    return str(path)


# ---------------------------------------------------------------- layouts and formats

def test_mixed_formats_grey_16bit_npy_and_stem_pairing(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    a16 = rng.integers(0, 65535, (20, 24)).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "image" / "a.tif")                     # 16-bit grey TIFF
    f = rng.random((20, 24)).astype(np.float32)
    np.save(tmp_path / "image" / "b.npy", f)                                    # float .npy
    Image.fromarray((f * 255).astype(np.uint8)).save(tmp_path / "image" / "c.bmp")
    Image.fromarray((f * 255).astype(np.uint8)).convert("LA").save(tmp_path / "image" / "d.png")  # grey + alpha
    mask = (rng.random((20, 24)) > 0.5).astype(np.uint8)
    Image.fromarray(mask * 255).save(tmp_path / "label" / "a_mask.png")         # a_mask.png pairing
    np.save(tmp_path / "label" / "b.npy", mask * 255)                           # .npy mask
    Image.fromarray(mask * 255).save(tmp_path / "label" / "c_label.png")
    Image.fromarray(mask * 255).save(tmp_path / "label" / "d.png")
    (tmp_path / "image" / ".DS_Store").write_text("x")                          # hidden files are skipped
    logs = []
    d = load_folder(str(tmp_path), log=logs.append)
    assert d["names"] == ["a", "b", "c", "d"] and d["in_channels"] == 1 and d["num_classes"] == 2
    np.testing.assert_array_equal(d["images"][0][0], a16.astype(np.float32))    # 16-bit values kept exactly
    np.testing.assert_array_equal(d["images"][1][0], f)
    for m in d["masks"]:
        np.testing.assert_array_equal(m, mask)
    assert d["mapping"] == {"kind": "values", "values": [0, 255]}
    assert any("alpha channel dropped" in s for s in logs)


def test_binary_values_mapping_is_said(tmp_path):
    _binary_folder(tmp_path, n=3)
    logs = []
    d = load_folder(str(tmp_path), log=logs.append)
    assert d["mapping"] == {"kind": "values", "values": [0, 255]}
    assert "masks: binary, values {0, 255}: 255 = foreground (class 1)" in "\n".join(logs)
    assert set(np.unique(np.concatenate([m.ravel() for m in d["masks"]]))) == {0, 1}


def test_rgb_rgba_palette_and_channel_last_npy_images(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rgb = rng.integers(0, 255, (16, 18, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.dstack([rgb, np.full((16, 18), 200, np.uint8)])).save(tmp_path / "images" / "b.png")  # RGBA
    Image.fromarray(rgb).convert("P").save(tmp_path / "images" / "c.png")       # palette image
    np.save(tmp_path / "images" / "d.npy", rgb.astype(np.float64) / 255)        # channel-last (H, W, 3)
    Image.fromarray(rgb).save(tmp_path / "images" / "e.jpg")
    for s in "abcde":
        Image.fromarray((rng.random((16, 18)) > 0.5).astype(np.uint8) * 255).save(tmp_path / "masks" / f"{s}.png")
    logs = []
    d = load_folder(str(tmp_path), log=logs.append)
    assert d["in_channels"] == 3 and all(im.shape == (3, 16, 18) for im in d["images"])
    np.testing.assert_array_equal(d["images"][0], rgb.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(d["images"][1], d["images"][0])               # alpha dropped
    np.testing.assert_allclose(d["images"][3], rgb.transpose(2, 0, 1) / 255, rtol=1e-6)
    text = "\n".join(logs)
    assert "alpha channel dropped" in text and "channel-last (H, W, 3) .npy images read as (3, H, W)" in text


def test_palette_mask_three_classes_and_grey_levels(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    pal = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759
    for s in "ab":
        Image.fromarray(rng.integers(0, 255, (12, 14)).astype(np.uint8)).save(tmp_path / "images" / f"{s}.png")
        idx = rng.integers(0, 3, (12, 14)).astype(np.uint8) * 2                  # palette indices 0, 2, 4
        p = Image.fromarray(idx, "P")
        p.putpalette(pal)
        p.save(tmp_path / "masks" / f"{s}.png")
    logs = []
    d = load_folder(str(tmp_path), log=logs.append)
    assert d["num_classes"] == 3 and d["mapping"]["values"] == [0, 2, 4] and d["mapping"]["palette"][:9] == pal[:9]
    assert "3 classes from the palette indices in sorted order: 0 -> 0, 2 -> 1, 4 -> 2" in "\n".join(logs)
    np.testing.assert_array_equal(d["masks"][0] * 2, np.asarray(Image.open(tmp_path / "masks" / "a.png")))


def test_rgb_colour_mask_table(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]], np.uint8)
    cls = rng.integers(0, 3, (10, 12))
    Image.fromarray(rng.integers(0, 255, (10, 12)).astype(np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(colours[cls]).save(tmp_path / "masks" / "a.png")
    logs = []
    d = load_folder(str(tmp_path), log=logs.append)
    assert d["mapping"] == {"kind": "colors", "colors": [[0, 0, 0], [0, 128, 255], [255, 0, 0]]}
    assert "RGB colours, 3 classes: (0, 0, 0) -> 0, (0, 128, 255) -> 1, (255, 0, 0) -> 2" in "\n".join(logs)
    from npunet.data.files import from_classes
    back = np.asarray(from_classes(d["masks"][0], d["mapping"]))
    np.testing.assert_array_equal(back, colours[cls])                           # predict writes them back


def test_two_page_tiff_stacks_as_pair_and_in_a_folder(tmp_path):
    rng = np.random.default_rng(4)
    vol = [Image.fromarray(rng.integers(0, 255, (16, 16)).astype(np.uint8)) for _ in range(2)]
    lab = [Image.fromarray((rng.random((16, 16)) > 0.5).astype(np.uint8) * 255) for _ in range(2)]
    vol[0].save(tmp_path / "train-volume.tif", save_all=True, append_images=vol[1:])
    lab[0].save(tmp_path / "train-labels.tif", save_all=True, append_images=lab[1:])
    d = load_folder(f"{tmp_path / 'train-volume.tif'}:{tmp_path / 'train-labels.tif'}", log=None)
    assert d["names"] == ["train-volume#1", "train-volume#2"]
    np.testing.assert_array_equal(d["images"][1][0], np.asarray(vol[1], np.float32))
    np.testing.assert_array_equal(d["masks"][1], np.asarray(lab[1]) // 255)
    d2 = load_folder(str(tmp_path), log=None)                                   # a folder holding one pair
    np.testing.assert_array_equal(d2["images"][0], d["images"][0])


# ---------------------------------------------------------------- bad data: one line naming the file

def _bad(tmp_path, case):
    _binary_folder(tmp_path, n=3, size=16)
    im, mk = tmp_path / "images", tmp_path / "masks"
    if case == "unreadable":
        (im / "c0.png").write_bytes(b"not a png at all")
    elif case == "non-image":
        (im / "notes.txt").write_text("hello")
    elif case == "no-mask":
        os.remove(mk / "c1_mask.png")
    elif case == "no-image":
        os.remove(im / "c2.png")
    elif case == "size":
        Image.fromarray(np.zeros((16, 15), np.uint8)).save(mk / "c1_mask.png")
    elif case == "values":
        Image.fromarray(np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 3).save(mk / "c0_mask.png")
    elif case == "empty":
        for f in os.listdir(im):
            os.remove(im / f)
    elif case == "channels":
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(im / "c2.png")
    elif case == "tiff-page":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "v.tif", save_all=True,
                                                            append_images=[Image.fromarray(np.ones((16, 16), np.uint8))])
        raw = (tmp_path / "v.tif").read_bytes()
        (tmp_path / "v.tif").write_bytes(raw[:len(raw) - 300])                   # the second page cut off
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "l.tif")
        return f"{tmp_path / 'v.tif'}:{tmp_path / 'l.tif'}"
    return str(tmp_path)


@pytest.mark.parametrize("case,msg", [
    ("unreadable", "c0.png': cannot be read as an image"),
    ("non-image", "notes.txt': not an image file"),
    ("no-mask", "1 image(s) without a mask in"),
    ("no-image", "1 mask(s) without an image in"),
    ("size", "c1_mask.png': mask is 16x15 but its image"),
    ("values", "c0_mask.png': the mask holds 256 different values, more than the 255 classes"),
    ("empty", "images': no image files"),
    ("channels", "c2.png': 3 channel(s) but"),
    ("tiff-page", "v.tif': "),
])
def test_bad_data_one_clear_line(tmp_path, case, msg, capsys):
    src = _bad(tmp_path, case)
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", src, "--out", str(tmp_path / "run")])
    text = str(e.value)
    assert text.startswith("npunet train: ") and msg in text and "\n" not in text and "Traceback" not in text
    if case == "no-mask":
        assert text.endswith("c1 (a mask is named like its image, or <stem>_mask)")


def test_missing_folder_and_empty_folder_are_named(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert "config key 'data'" in str(e.value) and "no such file or folder" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert "expected sub-folders images/ and masks/" in str(e.value) and "an empty folder" in str(e.value)


@pytest.mark.parametrize("cfg,msg", [
    ({"n_val": 6}, "config key 'n_val': '"),
    ({"batch_size": 6}, "config key 'batch_size': 6 is more than the 5 training images"),
    ({"model_config": {"in_channels": 1}}, "config key 'model_config.in_channels': 1, but the images have 3"),
    ({"model_config": {"num_classes": 4}}, "config key 'model_config.num_classes': 4, but the masks hold 2 classes"),
])
def test_explicit_values_that_cannot_work_name_the_key(tmp_path, cfg, msg):
    _binary_folder(tmp_path / "d", n=6, size=16, rgb=True)
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "d"), "--config", _write_config(tmp_path / "c.json", cfg),
              "--out", str(tmp_path / "run")])
    assert msg in str(e.value)


# ---------------------------------------------------------------- training and predict

@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """One RGB folder run with no config but a small model (default n_val, batch_size, weight map)."""
    root = tmp_path_factory.mktemp("own")
    _binary_folder(root / "d", n=6, size=32, rgb=True)
    cfg = _write_config(root / "c.json", SMALL)
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        main(["train", "--data", str(root / "d"), "--config", cfg, "--out", str(root / "run"), "--epochs", "2"])
    return root, buf.getvalue()


def test_folder_training_infers_and_says_what_it_chose(binary_run):
    root, out = binary_run
    assert "n_val 1: 1 of the 6 images held out" in out
    assert "batch_size 5: all 5 training images" in out
    assert "weight_map: the data has no touching-instance labels, so the instances are the connected components" in out
    assert "normalisation: per-channel (x - mean) / std" in out
    assert "nan" not in out and "instance F1" in out
    model, meta = npunet.train.load_model(str(root / "run" / "checkpoint.npz"))
    assert model.in_channels == 3 and meta["mask_mapping"] == {"kind": "values", "values": [0, 255]}
    assert meta["normalization"]["kind"] == "mean_std" and len(meta["normalization"]["mean"]) == 3


def test_predict_reproduces_validation_scores_exactly(binary_run, tmp_path):
    root, out = binary_run
    ck = root / "run" / "checkpoint.npz"
    meta = npunet.train.load_model(str(ck))[1]
    val = [ln for ln in out.splitlines() if ln.startswith("validation images:")][0].split(": ")[1].split(", ")
    main(["predict", "--checkpoint", str(ck), "--input", *[str(root / "d" / "images" / f"{s}.png") for s in val],
          "--out", str(tmp_path / "p"), "--quiet"])
    from npunet import metrics
    meter = metrics.SegmentationMeter(2)
    for s in val:
        pred = np.asarray(Image.open(tmp_path / "p" / f"{s}.png")) // 255
        meter.update(pred[None], np.asarray(Image.open(root / "d" / "masks" / f"{s}_mask.png"))[None] // 255)
    assert meter.compute()["dice"] == meta["history"]["val_dice"][-1]
    # the Python API on the same files gives the same masks
    api = npunet.predict(str(ck), [str(root / "d" / "images" / f"{s}.png") for s in val])
    np.testing.assert_array_equal(api[0] * 255, np.asarray(Image.open(tmp_path / "p" / f"{val[0]}.png")))


def test_predict_folder_overlay_probabilities_and_overwrite(binary_run, tmp_path):
    root, _ = binary_run
    ck = str(root / "run" / "checkpoint.npz")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 29, 3)).astype(np.uint8)).save(src / "x.png")   # any size
    np.save(src / "y.npy", rng.integers(0, 255, (3, 20, 21)).astype(np.float32))
    main(["predict", "--checkpoint", ck, "--input", str(src), "--out", str(tmp_path / "o"), "--overlay",
          "--probabilities", "--quiet"])
    assert sorted(os.listdir(tmp_path / "o")) == ["x.npy", "x.png", "x_overlay.png", "y.npy", "y.png", "y_overlay.png"]
    m = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    p = np.load(tmp_path / "o" / "x.npy")
    assert m.shape == (37, 29) and set(np.unique(m)) <= {0, 255}
    assert p.shape == (2, 37, 29) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(m == 255, p[1] > p[0])
    assert np.asarray(Image.open(tmp_path / "o" / "x_overlay.png")).shape == (37, 29, 3)
    assert sorted(os.listdir(src)) == ["x.png", "y.npy"]                        # nothing written into the input
    with pytest.raises(SystemExit) as e:
        main(["predict", "--checkpoint", ck, "--input", str(src / "*.png"), "--out", str(tmp_path / "o")])
    assert "already holds 1 of the outputs (x.png); give --force" in str(e.value)
    main(["predict", "--checkpoint", ck, "--input", str(src / "*.png"), "--out", str(tmp_path / "o"), "--force",
          "--quiet"])


def test_resume_is_bit_exact_with_folder_data(binary_run, tmp_path):
    root, _ = binary_run
    cfg = _write_config(tmp_path / "c.json", SMALL)
    d = str(root / "d")
    main(["train", "--data", d, "--config", cfg, "--out", str(tmp_path / "a"), "--epochs", "2"])
    main(["train", "--data", d, "--config", cfg, "--out", str(tmp_path / "b"), "--epochs", "1"])
    main(["train", "--data", d, "--config", cfg, "--out", str(tmp_path / "b"), "--epochs", "2", "--resume"])
    a, b = np.load(tmp_path / "a" / "checkpoint.npz"), np.load(tmp_path / "b" / "checkpoint.npz")
    keys = [k for k in a.files if k.startswith("model/")]
    assert keys and all(np.array_equal(a[k], b[k]) for k in keys)


def test_multiclass_palette_training_per_class_metrics_and_values_back(tmp_path, capsys):
    rng = np.random.default_rng(5)
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    pal = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759
    for i in range(5):
        h, w = 40 + 4 * i, 36 + 2 * i                                         # different sizes: random crops
        cls = np.zeros((h, w), np.uint8)
        cls[5:15, 5:15], cls[20:30, 8:20] = 1, 2
        img = (cls * 80 + rng.integers(0, 30, (h, w))).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "d" / "images" / f"m{i}.png")
        p = Image.fromarray(cls, "P")
        p.putpalette(pal)
        p.save(tmp_path / "d" / "masks" / f"m{i}.png")
    cfg = _write_config(tmp_path / "c.json", dict(SMALL, size=32, weight_map=False))
    main(["train", "--data", str(tmp_path / "d"), "--config", cfg, "--out", str(tmp_path / "run"), "--epochs", "2"])
    out = capsys.readouterr().out
    assert "num_classes 3 from the masks: 'ce' loss over 3 classes" in out
    assert "training on random 32x32 crops" in out
    assert "val mean Dice" in out and "(per class " in out and "instance F1" not in out and "nan" not in out
    ck = str(tmp_path / "run" / "checkpoint.npz")
    model, meta = npunet.train.load_model(ck)
    assert model.num_classes == 3 and meta["mask_mapping"]["palette"][:9] == pal[:9]
    main(["predict", "--checkpoint", ck, "--input", str(tmp_path / "d" / "images" / "m0.png"),
          "--out", str(tmp_path / "p"), "--quiet"])
    back = Image.open(tmp_path / "p" / "m0.png")
    assert back.mode == "P" and back.getpalette()[:9] == pal[:9] and back.size == (36, 40)
    r = npunet.train.evaluate(model, [np.zeros((1, 40, 36), np.float32)], [np.zeros((40, 36), np.uint8)])
    assert len(r["dice_per_class"]) == 3 and r["dice"] == pytest.approx(np.mean(r["dice_per_class"]))


# ---------------------------------------------------------------- tiling, the Python API, the loader

def test_large_same_padded_images_are_tiled_with_bounded_windows(monkeypatch):
    from npunet.data import tiling
    npunet.manual_seed(0)
    model = npunet.models.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()
    x = np.random.default_rng(0).random((1, 150, 133)).astype(np.float32)     # not a multiple of the tile
    whole = tiling.predict_same(model, x, 2)
    tiled = tiling.tile_same(model, x, 2, tile=48, margin=32)
    r = 20  # away from the image border (mirrored context vs. zero padding there)
    np.testing.assert_allclose(tiled[:, r:-r, r:-r], whole[:, r:-r, r:-r], rtol=1e-4, atol=1e-4)
    seen = []
    monkeypatch.setattr(tiling, "WHOLE_IMAGE_PIXELS", 100 * 100)
    monkeypatch.setattr(tiling, "_predict", lambda m, w: (seen.append(w.shape), m(w))[1])
    masks = npunet.predict(model, x)
    assert masks.shape == (150, 133) and max(s[-1] for s in seen) <= 512 + 2 * 64


def test_predict_valid_unet_on_a_non_multiple_size():
    npunet.manual_seed(0)
    model = npunet.models.UNet(1, 2, base_channels=2, depth=2, padding="valid")
    x = np.random.default_rng(1).random((2, 1, 45, 38)).astype(np.float32)
    masks, probs = npunet.predict(model, x, probabilities=True)
    assert masks.shape == (2, 45, 38) and probs[0].shape == (2, 45, 38)
    np.testing.assert_array_equal(masks[1], npunet.train.predict_masks(model, x)[1])


def test_loader_for_loop_advances_epochs_and_takes_any_dataset():
    from npunet.data import DataLoader

    class Plain:  # a PyTorch-style dataset
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return np.full((8, 8), i, np.float32), (np.arange(64).reshape(8, 8) % 2).astype(np.uint8)

    loader = DataLoader(Plain(), batch_size=3, seed=1)
    first = [b["image"][:, 0, 0, 0].tolist() for b in loader]
    second = [b["image"][:, 0, 0, 0].tolist() for b in loader]
    assert first == [b["image"][:, 0, 0, 0].tolist() for b in loader.iterate(0)]
    assert second == [b["image"][:, 0, 0, 0].tolist() for b in loader.iterate(1)]
    assert first != second and loader.epoch == 2
    b = next(iter(loader.iterate(0)))
    assert b["image"].shape == (3, 1, 8, 8) and b["mask"].shape == (3, 8, 8) and (b["weight"] == 1).all()


def test_training_crop_for_non_square_mixed_or_illegal_sizes():
    from npunet.config import merge
    from npunet.runs import _train_crop
    same = npunet.models.UNet(1, 2, base_channels=2, depth=2, padding="same")
    valid = npunet.models.UNet(1, 2, base_channels=2, depth=2, padding="valid")
    cfg = merge({"size": 64})
    sq = [np.zeros((1, 32, 32))] * 2
    assert _train_crop(cfg, same, sq) is None                                   # whole images fit
    assert _train_crop(cfg, same, [np.zeros((1, 48, 40))] * 2) == 40            # flips would rotate 48x40
    assert _train_crop(merge({"size": 64, "augment": {"flips": False}}), same, [np.zeros((1, 48, 40))] * 2) is None
    assert _train_crop(cfg, same, [np.zeros((1, 30, 30))] * 2) == 28            # multiples of 2^depth
    from npunet.models.sizes import is_legal
    c = _train_crop(cfg, valid, [np.zeros((1, 62, 62))] * 2)                    # 62 is no valid input size
    assert c == 60 and is_legal(c, 2, "valid") and not is_legal(62, 2, "valid")
