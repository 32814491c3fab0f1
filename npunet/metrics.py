"""Segmentation metrics from confusion counts, and instance-level F1.

Empty-mask policy: a class with TP + FP + FN = 0 (absent from both prediction and
truth) scores 1 for Dice, IoU, precision, recall and F1: predicting nothing where
there is nothing is perfect.  Precision alone (TP + FP = 0 but FN > 0) is 0.
"""
import numpy as np

from .kernels import label as _label


def confusion(pred, target, num_classes=2):
    """pred, target: int label arrays of one shape -> counts (num_classes, 4) as TP, FP, FN, TN."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"confusion: prediction {pred.shape} and target {target.shape} differ in shape")
    for name, a in (("prediction", pred), ("target", target)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"confusion: {name} labels must lie in [0, {num_classes}), found [{a.min()}, {a.max()}]")
    cm = np.bincount(target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel(),
                     minlength=num_classes ** 2).reshape(num_classes, num_classes)  # rows: truth
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def _ratio(num, den, empty):
    return np.where(den > 0, num / np.maximum(den, 1), empty)


def scores(counts):
    """counts (K, 4) -> dict of per-class arrays and their means: accuracy, precision, recall,
    f1, dice (= f1 for masks), iou.  'accuracy' is the overall pixel accuracy."""
    counts = np.asarray(counts, np.float64)
    tp, fp, fn, tn = counts.T
    empty = (tp + fp + fn) == 0
    out = {
        "precision": np.where(empty, 1.0, _ratio(tp, tp + fp, 0.0)),
        "recall": np.where(empty, 1.0, _ratio(tp, tp + fn, 0.0)),
        "dice": np.where(empty, 1.0, _ratio(2 * tp, 2 * tp + fp + fn, 1.0)),
        "iou": np.where(empty, 1.0, _ratio(tp, tp + fp + fn, 1.0)),
    }
    out["f1"] = out["dice"]
    res = {f"{k}_per_class": v for k, v in out.items()}
    res.update({k: float(v.mean()) for k, v in out.items()})
    res["accuracy"] = float(tp.sum() / max(counts[0].sum(), 1))
    return res


def binary_scores(pred_mask, true_mask):
    """Scores of the foreground class of two {0, 1} masks (plus pixel accuracy)."""
    c = confusion(np.asarray(pred_mask).astype(np.int64), np.asarray(true_mask).astype(np.int64), 2)
    s = scores(c[1:2])
    s["accuracy"] = float((c[1, 0] + c[1, 3]) / max(c[1].sum(), 1))
    return {k: v for k, v in s.items() if not k.endswith("_per_class")}


def label_components(mask, connectivity=4):
    """Connected components of a 2-D mask -> (labels int32, count).  Numba union-find
    (twin: npunet.kernels.label_ref)."""
    mask = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    if mask.ndim != 2:
        raise ValueError(f"label_components: expected a 2-D mask, got shape {mask.shape}")
    return _label(mask, connectivity)


def match_instances(pred_labels, true_labels, threshold=0.5):
    """Greedy one-to-one matching of predicted to true instances by IoU (>= threshold).
    Returns (tp, fp, fn, matched IoUs)."""
    p, t = np.asarray(pred_labels, np.int64), np.asarray(true_labels, np.int64)
    if p.shape != t.shape:
        raise ValueError(f"match_instances: shapes {p.shape} and {t.shape} differ")
    P, T = int(p.max(initial=0)), int(t.max(initial=0))
    inter = np.bincount(p.ravel() * (T + 1) + t.ravel(), minlength=(P + 1) * (T + 1)).reshape(P + 1, T + 1)
    ap, at = inter.sum(axis=1), inter.sum(axis=0)
    pi, ti = np.nonzero(inter[1:, 1:])
    pi, ti = pi + 1, ti + 1
    i = inter[pi, ti]
    iou = i / (ap[pi] + at[ti] - i)
    order = np.argsort(-iou, kind="stable")
    used_p, used_t, ious = set(), set(), []
    for k in order:
        if iou[k] < threshold:
            break
        if pi[k] in used_p or ti[k] in used_t:
            continue
        used_p.add(pi[k]); used_t.add(ti[k]); ious.append(float(iou[k]))
    n_pred = int((ap[1:] > 0).sum())
    n_true = int((at[1:] > 0).sum())
    tp = len(ious)
    return tp, n_pred - tp, n_true - tp, ious


def instance_f1(pred_mask, true_labels, threshold=0.5, connectivity=4):
    """Instance F1: connected components of the predicted foreground matched to the true
    instances at IoU >= threshold.  Shows whether touching cells were separated.
    Both empty: 1.0."""
    pl, _ = label_components(pred_mask, connectivity)
    tp, fp, fn, ious = match_instances(pl, true_labels, threshold)
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"f1": f1, "tp": tp, "fp": fp, "fn": fn, "mean_matched_iou": float(np.mean(ious)) if ious else 0.0}


class SegmentationMeter:
    """Accumulates confusion counts (and instance matches) over many batches.

    update(pred, target): int label maps (N, H, W) (or masks); optional true instance labels
    for instance F1.  compute() -> dict of scores over everything seen.
    """

    def __init__(self, num_classes=2):
        self.num_classes = num_classes
        self.reset()

    def reset(self):
        self.counts = np.zeros((self.num_classes, 4), np.int64)
        self.inst = np.zeros(3, np.int64)
        self.n_inst_images = 0

    def update(self, pred, target, true_instances=None):
        self.counts += confusion(pred, target, self.num_classes)
        if true_instances is not None:
            pred = np.asarray(pred)
            for pm, tl in zip(pred.reshape((-1,) + pred.shape[-2:]),
                              np.asarray(true_instances).reshape((-1,) + pred.shape[-2:])):
                r = instance_f1(pm > 0, tl)
                self.inst += (r["tp"], r["fp"], r["fn"])
                self.n_inst_images += 1

    def compute(self):
        s = scores(self.counts)
        fg = scores(self.counts[1:]) if self.num_classes == 2 else s
        res = {"accuracy": s["accuracy"], "dice": fg["dice"], "iou": fg["iou"], "precision": fg["precision"],
               "recall": fg["recall"], "f1": fg["f1"], "mean_dice_all_classes": s["dice"]}
        if self.n_inst_images:
            tp, fp, fn = self.inst
            res["instance_f1"] = 1.0 if tp + fp + fn == 0 else float(2 * tp / (2 * tp + fp + fn))
        return res
