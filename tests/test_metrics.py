"""Metrics, labelling, distance transforms and the U-Net weight map."""
import numpy as np
import pytest

from npunet import kernels as K, metrics as M
from npunet.data import weight_map


def test_confusion_and_scores_by_hand():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    true = np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    c = M.confusion(pred, true, 2)
    assert c[1].tolist() == [2, 1, 1, 4]  # TP, FP, FN, TN of the foreground
    s = M.binary_scores(pred, true)
    assert s["dice"] == pytest.approx(4 / 6) and s["iou"] == pytest.approx(2 / 4)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["accuracy"] == pytest.approx(6 / 8) and s["f1"] == s["dice"]


def test_empty_policy_and_useless_model_accuracy():
    empty = np.zeros((8, 8), int)
    s = M.binary_scores(empty, empty)
    assert s["dice"] == 1.0 and s["iou"] == 1.0
    # 1% foreground: predicting nothing is 99% accurate and useless
    true = np.zeros((10, 10), int)
    true[0] = [1] * 1 + [0] * 9
    s = M.binary_scores(np.zeros_like(true), true)
    assert s["accuracy"] == pytest.approx(0.99) and s["dice"] == 0.0 and s["recall"] == 0.0


@pytest.mark.parametrize("conn", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_matches_flood_fill_twin(conn, seed):
    mask = np.random.default_rng(seed).random((23, 31)) > 0.55
    lab, n = K.label(mask, conn)
    ref, nr = K.label_ref(mask, conn)
    assert n == nr and np.array_equal(lab, ref)


def test_label_checkerboard_many_components():
    mask = (np.indices((40, 40)).sum(axis=0) % 2).astype(bool)
    lab, n = K.label(mask, 4)
    assert n == 800 and K.label(mask, 8)[1] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edt_matches_brute_force(seed):
    mask = np.random.default_rng(seed).random((17, 23)) > 0.93
    np.testing.assert_allclose(K.edt_sq(mask), K.edt_sq_ref(mask))
    assert np.isinf(K.edt_sq(np.zeros((3, 4), bool))).all()


def test_instance_f1_detects_merged_cells():
    true = np.zeros((20, 30), np.int32)
    true[5:15, 3:13] = 1
    true[5:15, 14:24] = 2      # two cells with a 1-px gap
    sep = true > 0
    assert M.instance_f1(sep, true)["f1"] == 1.0
    merged = sep.copy()
    merged[5:15, 13] = True    # the gap filled: one blob
    r = M.instance_f1(merged, true)
    assert r["tp"] == 0 and r["fp"] == 1 and r["fn"] == 2 and r["f1"] == 0.0
    assert M.binary_scores(merged, sep)["dice"] > 0.97  # pixel Dice barely notices


def test_meter_accumulates():
    m = M.SegmentationMeter()
    a = np.array([[[1, 0], [0, 0]]])
    m.update(a, a, true_instances=a)
    m.update(np.zeros_like(a), a, true_instances=a)
    r = m.compute()
    assert r["dice"] == pytest.approx(2 / 3) and r["instance_f1"] == pytest.approx(2 / 3)


def test_weight_map_gap_between_touching_cells():
    lab = np.zeros((40, 50), np.int32)
    lab[10:30, 5:24] = 1
    lab[10:30, 26:45] = 2      # 2-px gap at columns 24, 25
    w = weight_map(lab, w0=10, sigma=5)
    n, nf = lab.size, (lab > 0).sum()
    wc_bg = n / (2 * (n - nf))
    # gap pixels: d1 = 1, d2 = 2 -> w0 * exp(-9 / 50)
    assert w[20, 24] == pytest.approx(wc_bg + 10 * np.exp(-9 / 50), rel=1e-6)
    assert w[20, 24] > 0.8 * (10 + wc_bg)
    assert w[2, 2] < wc_bg + 0.2          # far from both cells: class weight only
    assert w[20, 10] == pytest.approx(n / (2 * nf), rel=1e-6)   # inside a cell
    # brute-force check of the border term everywhere
    d = np.stack([np.sqrt(K.edt_sq_ref(lab == k)) for k in (1, 2)])
    d.sort(axis=0)
    ref = np.where(lab > 0, n / (2 * nf), wc_bg + 10 * np.exp(-(d[0] + d[1]) ** 2 / 50))
    np.testing.assert_allclose(w, ref, rtol=1e-5)
    assert np.allclose(weight_map(lab, class_balance=False)[lab > 0], 1.0)
    with pytest.raises(ValueError, match="weight_map: expected integer instance labels"):
        weight_map(lab.astype(float))
