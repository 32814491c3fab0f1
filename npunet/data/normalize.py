"""The one input normalisation of a run: computed once from the training images, recorded in the
checkpoint, and applied by the same function everywhere (training loader, validation, ``predict``,
``cv``, ``npunet.predict``), so a file predicted after training gives the validation result exactly.

A record is a JSON-able dict:
  {"kind": "identity"}                                  x
  {"kind": "mean_std", "mean": [m_c...], "std": [s_c...]}  (x - m_c) / s_c per channel
  {"kind": "range", "low": a, "high": b}                 (x - a) / (b - a)
(ImageNet statistics of a pretrained encoder are a "mean_std" record in the file's value range.)
"""
import numpy as np


def mean_std(images):
    """Per-channel mean and std over all pixels of raw images: a list of (C, H, W) arrays (sizes may
    differ) or (N, C, H, W).  Accumulated in float64 so the order of images does not matter."""
    C = images[0].shape[0]
    s, s2, n = np.zeros(C), np.zeros(C), 0
    for im in images:
        a = np.asarray(im, np.float64).reshape(C, -1)
        s += a.sum(axis=1)
        s2 += (a * a).sum(axis=1)
        n += a.shape[1]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1), std, 1.0)  # a constant channel: only centred
    return {"kind": "mean_std", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _coeffs(record, C):
    kind = (record or {"kind": "identity"}).get("kind")
    if kind == "identity":
        return None
    if kind == "mean_std":
        mean, std = np.asarray(record["mean"], np.float32), np.asarray(record["std"], np.float32)
        if mean.size == 1:
            mean, std = np.repeat(mean, C), np.repeat(std, C)
        if mean.size != C:
            raise ValueError(f"normalization: the record has {mean.size} channel(s) but the image has {C}")
        return mean.reshape(C, 1, 1), std.reshape(C, 1, 1)
    if kind == "range":
        lo, hi = np.float32(record["low"]), np.float32(record["high"])
        return np.full((C, 1, 1), lo, np.float32), np.full((C, 1, 1), hi - lo, np.float32)
    raise ValueError(f"normalization: unknown kind {kind!r} (identity, mean_std, range)")


def normalize(x, record):
    """Raw image(s) x: (C, H, W) or (N, C, H, W) -> float32 normalised copy.  Always computed in
    float32 with the same operations, so every path gives bit-identical inputs."""
    x = np.asarray(x, np.float32)
    c = _coeffs(record, x.shape[-3])
    if c is None:
        return x.copy()
    return (x - c[0]) / c[1]


def describe(record):
    kind = (record or {"kind": "identity"})["kind"]
    if kind == "identity":
        return "none (the values are used as they are)"
    if kind == "range":
        return f"(x - {record['low']:g}) / ({record['high']:g} - {record['low']:g})"
    return ("per-channel (x - mean) / std of the training images, mean "
            + ", ".join(f"{m:.4g}" for m in record["mean"]) + ", std " + ", ".join(f"{s:.4g}" for s in record["std"]))
