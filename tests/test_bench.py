"""npunet bench's own arithmetic and plumbing on tiny cases (no PyTorch, a few seconds): the FLOP
count of every convolution kind, the resident-peak probe, the inference memory rows, the predict
row, the EM recipe's batches and run, the command line."""
import sys

import numpy as np
import pytest

import npunet
from npunet import nn
from npunet.app import bench, recipe_em


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv2d(3, 5, 3), (2, 3, 9, 8)),
    (lambda: nn.Conv2d(4, 6, (3, 1), stride=2), (1, 4, 11, 7)),
    (lambda: nn.Conv2d(4, 6, 3, groups=2), (2, 4, 8, 8)),                  # grouped
    (lambda: nn.Conv2d(6, 6, 3, groups=6), (2, 6, 8, 9)),                  # depthwise
    (lambda: nn.ConvTranspose2d(4, 3, 2, stride=2), (2, 4, 5, 6)),         # U-Net's up-conv
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), (1, 4, 5, 5)),
])
def test_conv_flops_counts_every_multiply_add_of_the_direct_convolution(make, shape):
    """With ones for input and weights, zero bias and no padding, the output's sum is the number of
    multiply-adds the direct (or transposed) convolution does: an independent count."""
    m = make().double()
    for p in m.parameters():
        p.data[...] = 1.0 if p.data.ndim > 1 else 0.0
    macs = m(np.ones(shape)).sum()
    assert bench.conv_flops(m, shape) == 2 * round(macs)


def test_conv_flops_of_a_model_is_the_sum_of_its_convolutions():
    m = npunet.models.UNet(1, 2, base_channels=4, depth=2, padding="same")
    shape = (2, 1, 16, 16)
    convs = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))]
    _, calls = npunet.models.summary.trace_shapes(m, shape)
    by_layer = sum(bench.conv_flops(c, inp[0].shape) for c, inp, _ in calls if c in convs)
    assert len([c for c, _, _ in calls if c in convs]) == len(convs)   # each conv counted once
    assert bench.conv_flops(m, shape) == by_layer > 0


def _can_reset_peak():
    return sys.platform.startswith("linux") and bench._reset_peak()


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs")
def test_peak_above_sees_a_temporary_array_and_keeps_the_result():
    def f():
        a = np.ones(16 * 2 ** 20)        # 128 MiB, touched, then freed
        return float(a.sum())
    r, b = bench.peak_above(f)
    assert r == 16 * 2 ** 20
    assert 120 * 2 ** 20 < b < 400 * 2 ** 20
    _, small = bench.peak_above(lambda: np.ones(10).sum())
    assert small < 32 * 2 ** 20


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs")
def test_inference_rows_eval_forward_takes_less_memory_than_a_training_forward():
    spec = ["tiny", "UNet", dict(in_channels=1, num_classes=2, base_channels=8), [1, 1, 188, 188]]
    ev = bench._worker("_infer_worker", spec, 0, "eval", env=bench._MEM_ENV)["bytes"]
    tr = bench._worker("_infer_worker", spec, 0, "train", env=bench._MEM_ENV)["bytes"]
    # a training forward keeps every conv's input (at least the 8-channel 188^2 maps), eval only live maps
    assert 0 < ev < tr and tr > 4 * 8 * 184 * 184 * 4
    t = bench._infer_worker(spec, 2, "time")
    assert len(t["times"]) == 2 and t["flops"] == bench.conv_flops(npunet.models.UNet(**spec[2]), spec[3])


def test_predict_row_runs_the_overlap_tile_prediction():
    spec = ["tiny", "UNet", dict(in_channels=1, num_classes=2, base_channels=4), 200]
    r = bench._predict_worker(spec, 2)
    assert r["shape"] == [200, 200] and r["pixels"] == 200 * 200 and len(r["times"]) == 2


def test_recipe_batches_keep_images_and_masks_aligned_and_follow_the_seed():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 40, 36)).astype(np.float32)
    masks = (images > 0.5).astype(np.float32)
    got = list(recipe_em.batches(images, masks, 5, batch=4, crop=16, seed=3))
    assert len(got) == 5
    for x, t in got:
        assert x.shape == (4, 1, 16, 16) and t.shape == (4, 1, 16, 16) and x.dtype == t.dtype == np.float32
        np.testing.assert_array_equal(t, x > 0.5)           # same crop, same flips
    again = next(recipe_em.batches(images, masks, 1, batch=4, crop=16, seed=3))[0]
    np.testing.assert_array_equal(again, got[0][0])
    other = next(recipe_em.batches(images, masks, 1, batch=4, crop=16, seed=4))[0]
    assert not np.array_equal(other, got[0][0])
    with pytest.raises(ValueError, match="crop 64 is larger than the 40x36 images"):
        next(recipe_em.batches(images, masks, 1, crop=64))


def test_recipe_runs_and_reports_without_pytorch(monkeypatch):
    lines = []
    monkeypatch.setattr(bench, "_worker", lambda fn, *a, env=None: getattr(bench, fn)(*a))
    monkeypatch.setitem(sys.modules, "torch", None)   # as where PyTorch is not installed
    r = bench.bench_recipe("em", steps=3, out=lines.append, n_images=2, size=64, crop=32, base_channels=4)
    run = r["npunet_run"]
    assert r["torch"] is None and run["wall"] > 0 and np.isfinite([run["loss_first"], run["loss_last"]]).all()
    assert lines and lines[0].startswith("EM recipe: padded BN U-Net base 4, 4x32^2 random crops of 2 synthetic 64^2")
    with pytest.raises(ValueError, match="no recipe 'isbi'"):
        bench.bench_recipe("isbi")


def test_command_line_names_every_case_and_the_recipe():
    from npunet.cli import build_parser
    p = build_parser()
    a = p.parse_args(["bench", "--model", "resnet34-b4", "infer572", "predict4096"])
    assert a.model == ["resnet34-b4", "infer572", "predict4096"] and a.recipe is None
    a = p.parse_args(["bench", "--recipe", "em", "--steps", "5", "--rounds", "2"])
    assert (a.recipe, a.steps, a.rounds) == ("em", 5, 2)
    assert set(bench.ALL_CASES) >= {"resnet34-b4", "mobilenet_v2-b4", "efficientnet-b0-b4", "infer572",
                                    "predict4096"}
    for name in ("resnet34", "mobilenet_v2", "efficientnet-b0"):
        assert bench.MODEL_CASES[name + "-b4"][3] == (4, 3, 256, 256)
        assert bench.MODEL_CASES[name][3] == (1, 3, 256, 256)
    with pytest.raises(ValueError, match="no case 'nope'"):
        bench.bench_model(["nope"], out=lambda s: None)


def test_npunet_bench_is_the_app_module_and_leaves_pytorch_alone():
    import npunet.bench as old
    assert old is bench and npunet.bench is bench       # the old path: a sys.modules alias
    assert "npunet.app.torch_twins" not in sys.modules  # imported only inside the PyTorch workers


@pytest.mark.parametrize("flag", ["--steps", "--repeat", "--rounds"])
def test_bench_counts_below_one_are_one_line(flag):
    """--steps 0 / --repeat 0 / --rounds -2: one line naming the flag, before anything is timed."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "npunet", "bench", "--recipe", "em", flag, "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip() == f"npunet bench: {flag} must be a whole number >= 1, got 0"
