"""Data, augmentation, loader, overlap-tile, optimisers, trainer, checkpoints and the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npunet
from npunet import data as D, optim, losses, models
from npunet.data import augment as A
from npunet.train import Trainer, load_model


# ---------------------------------------------------------------- synthetic data

def test_synthetic_cells_are_seeded_touching_and_binary():
    x1, l1, m1 = D.make_cells(3, 96, seed=5)
    x2, l2, m2 = D.make_cells(3, 96, seed=5)
    assert np.array_equal(x1, x2) and np.array_equal(l1, l2)
    assert x1.shape == (3, 1, 96, 96) and x1.dtype == np.float32 and l1.dtype == np.int32
    assert set(np.unique(m1)) <= {0, 1}
    for lab, m in zip(l1, m1):
        border = D.touching_borders(lab)
        assert border.sum() > 20                      # many cells touch
        assert not m[border].any()                    # the mask keeps the gap
        assert (m == ((lab > 0) & ~border)).all()
        assert lab.max() >= 10


def test_noise_task_is_99_percent_background():
    x, m = D.make_noise_task(4, 64)
    assert abs(m.mean() - 0.01) < 0.005


def test_nuclei_image_ships_with_125_nuclei():
    img, lab, mask = D.load_nuclei()
    assert img.shape == (512, 512) and len(np.unique(lab)) - 1 == 125 and 0 <= img.min() < img.max() <= 1
    s = D.nuclei_split(128)
    assert s["train"][0].shape == (12, 1, 128, 128) and s["test"][0].shape == (4, 1, 128, 128)


# ---------------------------------------------------------------- augmentation

def test_warp_bicubic_matches_twin(rng):
    img = rng.standard_normal((2, 13, 11))
    sy = rng.uniform(-3, 15, (13, 11))
    sx = rng.uniform(-3, 13, (13, 11))
    out = np.full_like(img, np.nan)
    A.warp_bicubic(0, 5, img, sy, sx, out)                    # output rows 0..4, then the rest
    A.warp_bicubic(5, img.shape[1], img, sy, sx, out)
    np.testing.assert_allclose(out, A.warp_bicubic_ref(img, sy, sx), atol=1e-12)


def test_identity_warp_and_integer_shift_are_exact(rng):
    img = rng.standard_normal((1, 9, 8))
    yy, xx = np.mgrid[0:9, 0:8].astype(float)
    out = np.empty_like(img)
    A.warp_bicubic(0, img.shape[1], img, yy, xx, out)
    np.testing.assert_allclose(out, img, atol=1e-12)
    A.warp_bicubic(0, img.shape[1], img, yy, xx + 1, out)
    np.testing.assert_allclose(out[:, :, :-1], img[:, :, 1:], atol=1e-12)


def test_elastic_displacement_statistics():
    rng = np.random.default_rng(0)
    d = np.array([A.elastic_displacement(64, 64, rng, 3, 10.0)[0][[0, 32, 63]][:, [0, 32, 63]] for _ in range(400)])
    assert 8.5 < d.std() < 11.5  # the 3x3 grid points carry std 10 px


def test_geometric_augmentation_moves_image_and_labels_together(rng):
    lab = (rng.random((1, 32, 32)) > 0.5).astype(np.float32)
    img = lab.copy()
    for seed in range(6):
        r = np.random.default_rng(seed)
        a, b = A.flip_rotate(img, lab, r)
        assert np.array_equal(a, b)
        a, b = A.elastic(img, lab, np.random.default_rng(seed))
        assert set(np.unique(b)) <= {0.0, 1.0}          # nearest keeps labels
        assert np.mean(np.abs(a - b)) < 0.2             # bicubic image follows the labels


def test_loader_random_access_equals_sequential():
    x, lab, m = D.make_cells(6, 48, seed=1)
    ds = D.SegmentationDataset(x, m, lab, weight_map=True)
    ld = D.DataLoader(ds, batch_size=2, augment=D.Augment(elastic_p=1.0), seed=3)
    full = list(ld.iterate(1))
    tail = list(ld.iterate(1, start=1))
    for a, b in zip(full[1:], tail):
        for k in a:
            assert np.array_equal(a[k], b[k])
    assert not np.array_equal(full[0]["image"], list(ld.iterate(2))[0]["image"])


@pytest.mark.parametrize("images,masks,msg", [
    (np.zeros((2, 1, 8, 8)), np.zeros((3, 8, 8)), "2 images but 3 masks"),
    (np.zeros((2, 1, 8, 8)), np.zeros((2, 8, 9)), r"images are \(8, 8\) but masks are \(8, 9\)"),
    (np.zeros((2, 1, 8, 8)), np.full((2, 8, 8), 255), r"divide a \{0, 255\} mask by 255"),
    (np.zeros((2, 1, 8, 8)), np.arange(128).reshape(2, 8, 8), r"instance labels\?"),
])
def test_bad_data_is_named(images, masks, msg):
    with pytest.raises(ValueError, match=msg):
        D.check_pair(images, masks)


def test_kfold_covers_everything():
    folds = D.kfold_indices(11, 4)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(11))
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 11


# ---------------------------------------------------------------- prediction on any size

def test_overlap_tile_stitches_windows(rng):
    npunet.manual_seed(0)
    m = models.UNet(1, 2, base_channels=2, depth=2).eval()
    img = rng.standard_normal((1, 23, 30)).astype(np.float32)
    y = D.overlap_tile(m, img, tile=52, depth=2)
    assert y.shape == (2, 23, 30)
    ctx = 20                                   # output 12 = a multiple of 2^2: windows step by 12
    padded = np.pad(img, ((0, 0), (ctx, ctx + 24 - 23), (ctx, ctx + 36 - 30)), mode="symmetric")
    np.testing.assert_allclose(y[:, 12:23, 12:24], m(padded[None, :, 12:64, 12:64])[0, :, :11, :12], atol=1e-6)


@pytest.mark.parametrize("depth,tile", [(2, 52), (3, 132), (4, 252)])
def test_overlap_tile_has_no_seams(rng, depth, tile):
    """The stitched logits equal one pass over the whole mirrored image, also when the output tile is
    not a multiple of 2^depth (132 -> 44 at depth 3, 252 -> 68 at depth 4): the windows step by a multiple
    of 2^depth, so they all see the whole image's max-pool grid."""
    npunet.manual_seed(0)
    m = models.UNet(1, 2, base_channels=2, depth=depth).to(np.float64).eval()
    H, W = 61, 47
    img = rng.standard_normal((1, H, W))
    y = D.overlap_tile(m, img, tile=tile, depth=depth)
    from npunet.models.sizes import is_legal, output_size
    ctx = (tile - output_size(tile, depth)) // 2
    S = next(s for s in range(max(H, W) + 2 * ctx, 4000) if is_legal(s, depth, "valid"))
    whole = m(np.pad(img, ((0, 0), (ctx, S - H - ctx), (ctx, S - W - ctx)), mode="symmetric")[None])[0, :, :H, :W]
    assert np.abs(y - whole).max() <= 1e-12 * np.abs(whole).max()


def test_overlap_tile_rejects_a_tile_too_small_to_step(rng):
    m = models.UNet(1, 2, base_channels=2, depth=4).eval()
    with pytest.raises(ValueError, match="tile 188 gives 4 output pixels, fewer than the 2\\^depth = 16"):
        D.overlap_tile(m, rng.standard_normal((1, 20, 20)).astype(np.float32), tile=188, depth=4)


def test_same_model_pads_and_crops(rng):
    m = models.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()
    img = rng.standard_normal((1, 13, 10)).astype(np.float32)
    assert D.predict_same(m, img, 2).shape == (2, 13, 10)


# ---------------------------------------------------------------- optimisers

def test_sgd_and_adam_follow_pytorch_rules():
    from npunet.nn import Parameter
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    w, buf = p.data.copy(), None
    for step in range(3):
        p.grad = 2 * p.data.copy()
        g = 2 * w + 0.01 * w
        buf = g if buf is None else 0.9 * buf + g
        w = w - 0.1 * (g + 0.9 * buf)
        opt.step()
        np.testing.assert_allclose(p.data, w, rtol=1e-12)
    q = Parameter(np.array([0.5, 3.0]))
    adam = optim.Adam([q], lr=0.01)
    w, m, v = q.data.copy(), 0, 0
    for t in range(1, 4):
        q.grad = np.cos(q.data)
        g = np.cos(w)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.01 / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
        adam.step()
        np.testing.assert_allclose(q.data, w, rtol=1e-12)
    s = optim.CosineAnnealingLR(adam, T_max=4)
    lrs = []
    for _ in range(4):
        s.step()
        lrs.append(adam.lr)
    np.testing.assert_allclose(lrs, [0.01 * (1 + np.cos(np.pi * k / 4)) / 2 for k in range(1, 5)])


# ---------------------------------------------------------------- trainer and checkpoints

RESUME_SCRIPT = r"""
import sys, numpy as np, npunet
from npunet import data as D, optim, losses, models
from npunet.train import Trainer

def make(ck):
    npunet.manual_seed(0)
    x, lab, m = D.make_cells(6, 32, seed=2)
    ds = D.SegmentationDataset(x, m, lab, weight_map=True)
    loader = D.DataLoader(ds, batch_size=2, augment=D.Augment(elastic_p=0.5), seed=4)
    net = models.UNet(1, 2, base_channels=4, depth=2, padding="same", batch_norm=True, dropout=0.3)
    opt = optim.Adam(net.parameters(), lr=1e-2)
    return Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=optim.StepLR(opt, 1, 0.5),
                   use_weight_map=True, checkpoint_path=ck, progress=False, log=None)

mode, ck, out = sys.argv[1], sys.argv[2], sys.argv[3]
t = make(ck)
if mode == "straight":
    t.fit(epochs=3, max_steps=7)
elif mode == "first":
    t.fit(epochs=3, max_steps=4)
    t.save(ck)
else:
    t.load(ck)
    t.fit(epochs=3, max_steps=7)
np.savez(out, **{k: v for k, v in t.model.state_dict().items()})
"""


def test_resume_in_fresh_process_is_bit_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    ck = str(tmp_path / "ck.npz")

    def run(mode, out):
        subprocess.run([sys.executable, str(script), mode, ck, str(tmp_path / out)], check=True)
        return dict(np.load(tmp_path / out))

    straight = run("straight", "a.npz")
    os.remove(ck) if os.path.exists(ck) else None
    run("first", "b.npz")
    resumed = run("resume", "c.npz")  # 4 steps, save, new process, 3 more (crossing epoch ends)
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert np.array_equal(straight[k], resumed[k]), k


def _tiny_trainer(tmp_path, **kw):
    npunet.manual_seed(0)
    x, lab, m = D.make_cells(4, 32, seed=2)
    ds = D.SegmentationDataset(x, m, lab)
    net = models.UNet(1, 2, base_channels=2, depth=2, padding="same", batch_norm=True)
    opt = optim.SGD(net.parameters(), lr=kw.pop("lr", 0.01), momentum=0.9)
    return Trainer(net, losses.CrossEntropyLoss(), opt, D.DataLoader(ds, 2, seed=0),
                   checkpoint_path=str(tmp_path / "ck.npz"), progress=False, log=None, **kw)


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    t = _tiny_trainer(tmp_path)
    t.fit(1)
    before = dict(np.load(tmp_path / "ck.npz"))

    def broken(f, **arrays):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        t.save(str(tmp_path / "ck.npz"))
    monkeypatch.undo()
    after = dict(np.load(tmp_path / "ck.npz"))
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temp file left behind


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    t = _tiny_trainer(tmp_path)
    t.fit(1)
    t.model.outc.bias.data[:] = np.inf
    with pytest.raises(FloatingPointError, match=r"(loss became|NaN/Inf).*"):
        t.fit(2)
    load_model(str(tmp_path / "ck.npz"))  # the last good checkpoint still loads


def test_nan_loss_message_names_the_step(tmp_path):
    t = _tiny_trainer(tmp_path, lr=1e30)
    with pytest.raises(FloatingPointError, match=r"step \d+"):
        t.fit(5)


def test_bad_checkpoints_are_named(tmp_path):
    t = _tiny_trainer(tmp_path)
    t.fit(1)
    ck = tmp_path / "ck.npz"
    other = Trainer(models.UNet(1, 2, base_channels=4, depth=2, padding="same"), losses.CrossEntropyLoss(),
                    optim.SGD([npunet.nn.Parameter(np.zeros(1))]), t.loader, progress=False, log=None)
    with pytest.raises(ValueError, match=r"holds a UNet with .*base_channels': 2"):
        other.load(str(ck))
    raw = ck.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*trunc.npz.*truncated"):
        load_model(str(tmp_path / "trunc.npz"))
    t.model.save(tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="not an npunet checkpoint"):
        load_model(str(tmp_path / "weights.npz"))


def test_deep_supervision_and_cgm_train_steps(tmp_path):
    x, lab, m = D.make_cells(4, 32, seed=2)
    ds = D.SegmentationDataset(x, m, lab)
    for net, loss in [(models.UNetPlusPlus(1, 1, filters=(2, 3, 4), depth=2, deep_supervision=True), losses.CombinedLoss.unetpp()),
                      (models.UNet3Plus(1, 1, filters=(2, 2, 2, 2, 2), cat_channels=2, deep_supervision=True, cgm=True),
                       losses.CombinedLoss([(losses.FocalLoss(), 1), (losses.IoULoss(), 1)]))]:
        t = Trainer(net, loss, optim.Adam(net.parameters(), 1e-2), D.DataLoader(ds, 2), progress=False, log=None)
        h = t.fit(1)
        assert len(h["step_loss"]) == 2 and all(np.isfinite(h["step_loss"]))


# ---------------------------------------------------------------- demo and CLI

def test_demo_pipeline_small(tmp_path):
    from npunet.demo import run_demo
    r = run_demo(epochs=1, n_train=8, out=str(tmp_path / "demo"), progress=False, log=lambda *a: None, trace=False)
    assert {"dice", "iou", "instance_f1"} <= set(r["metrics"])
    for f in ("training_curves.png", "predictions.png", "checkpoint.npz"):
        assert (tmp_path / "demo" / f).stat().st_size > 1000


def test_cli_summary_train_predict(tmp_path):
    env = dict(os.environ)
    run = lambda *a: subprocess.run([sys.executable, "-m", "npunet", *a], capture_output=True, text=True, env=env)
    r = run("summary")
    assert r.returncode == 0 and "572→570→568→284" in r.stdout and "31,030,658" in r.stdout
    r = run("summary", "--size", "570")
    assert r.returncode != 0 and "nearest: 556 or 572" in r.stderr
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"n_train": 4, "n_val": 2, "size": 32, "batch_size": 2, "epochs": 1,
                               "model_config": {"in_channels": 1, "num_classes": 2, "base_channels": 2, "depth": 2,
                                                "padding": "same", "batch_norm": True}}))
    r = run("train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    r = run("train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--epochs", "2", "--resume")
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr
    img = tmp_path / "img.npy"
    np.save(img, np.random.default_rng(0).random((40, 37)).astype(np.float32))
    r = run("predict", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"), "--input", str(img), "--out",
            str(tmp_path / "pred"))
    assert r.returncode == 0 and (tmp_path / "pred" / "img.png").exists(), r.stderr
    (tmp_path / "bad.json").write_text('{"modle": "UNet"}')
    r = run("train", "--config", str(tmp_path / "bad.json"))
    assert r.returncode != 0 and "unknown key 'modle' (did you mean 'model'?)" in r.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() != 0:  # root can write anywhere; use a path under a file instead
        target = str(ro / "out")
    else:
        (tmp_path / "afile").write_text("x")
        target = str(tmp_path / "afile" / "out")
    r = run("demo", "--out", target, "--epochs", "1")
    assert r.returncode != 0 and "cannot write to the output folder" in r.stderr


def test_weight_map_weights_the_gap_between_touching_cells():
    """Two touching cells; the mask cuts the touching border (a 2-pixel gap) as the synthetic data
    does.  Every gap pixel must get w_c(background) + w0 exp(-(d1 + d2)^2 / 2 sigma^2), with d1, d2
    its distances to the two cells of the segmentation, not the foreground class weight."""
    from npunet.data.synthetic import touching_borders
    from npunet.kernels import edt_sq_ref
    lab = np.zeros((20, 24), np.int32)
    lab[5:15, 3:12], lab[5:15, 12:21] = 1, 2
    mask = ((lab > 0) & ~touching_borders(lab)).astype(np.uint8)
    gap = (lab > 0) & (mask == 0)
    assert gap.sum() == 20  # columns 11 and 12, rows 5..14
    w0, sigma = 10.0, 5.0
    w = D.weight_map(lab, w0, sigma, mask=mask)
    seg = np.where(mask > 0, lab, 0)
    d1, d2 = np.sqrt(edt_sq_ref(seg == 1)), np.sqrt(edt_sq_ref(seg == 2))
    n, nf = mask.size, mask.sum()
    expect = n / (2.0 * (n - nf)) + w0 * np.exp(-(d1 + d2) ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(w[gap], expect[gap], rtol=1e-6)
    assert (w[gap] > w0 * 0.8).all()                            # d1 + d2 = 3 px: 8.4 + w_c
    assert np.allclose(w[mask > 0], n / (2.0 * nf))             # cell pixels: the class weight only
    # the mistake this guards against: the labels alone call the gap foreground
    wrong = D.weight_map(lab, w0, sigma)
    assert (wrong[gap] < 2).all()
    # the dataset computes its map from the segmentation it trains on
    ds = D.SegmentationDataset(np.zeros((1, 1, 20, 24), np.float32), mask[None], lab[None], weight_map=True)
    np.testing.assert_allclose(ds.weights[0], w)


def test_predict_images_batches_same_padded_models_like_predict_image():
    from npunet.data.tiling import predict_image, predict_images
    m = models.UNet(1, 2, base_channels=4, depth=2, padding="same", batch_norm=True)
    m(np.random.default_rng(0).random((4, 1, 20, 20)).astype(np.float32))      # BN statistics move
    x = np.random.default_rng(1).random((5, 1, 18, 22)).astype(np.float32)
    got, want = predict_images(m, x, batch=2), [predict_image(m, im) for im in x]
    assert len(got) == 5 and m.training
    for a, b in zip(got, want):
        assert a.shape == b.shape == (2, 18, 22) and np.abs(a - b).max() < 1e-5
    v = models.UNet(1, 2, base_channels=2, depth=1)                            # valid: tiled per image
    assert [y.shape for y in predict_images(v, x[:2])] == [(2, 18, 22)] * 2
