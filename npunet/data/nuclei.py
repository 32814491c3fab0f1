"""The real example: one 2018 Data Science Bowl nuclei image shipped inside the package
(see nuclei_dsb2018.txt for source and licence)."""
import os

import numpy as np

_PATH = os.path.join(os.path.dirname(__file__), "nuclei_dsb2018.npz")


def load_nuclei():
    """Returns (image float32 (512, 512) scaled to [0, 1], instance labels int32 (512, 512), mask uint8)."""
    with np.load(_PATH) as z:
        img, lab = z["image"], z["labels"].astype(np.int32)
    img = img.astype(np.float32) / 255.0
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    from .synthetic import touching_borders
    mask = ((lab > 0) & ~touching_borders(lab)).astype(np.uint8)
    return img, lab, mask


def nuclei_split(tile=128, seed=0):
    """Cut the image into (512/tile)^2 tiles and split them 3:1 into train and held-out sets.
    Returns dict(train=(images (n, 1, t, t), labels, masks), test=(...))."""
    img, lab, mask = load_nuclei()
    k = img.shape[0] // tile
    tiles = [(img[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile], lab[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile],
              mask[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile]) for i in range(k) for j in range(k)]
    order = np.random.default_rng(seed).permutation(len(tiles))
    n_test = max(1, len(tiles) // 4)

    def pack(idx):
        return (np.stack([tiles[i][0] for i in idx])[:, None], np.stack([tiles[i][1] for i in idx]),
                np.stack([tiles[i][2] for i in idx]))

    return dict(train=pack(order[n_test:]), test=pack(order[:n_test]))
