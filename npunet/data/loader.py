"""A dataset of (image, mask, instance labels, weight map) and a seeded batch loader."""
import numpy as np

from .weightmap import weight_map as _weight_map


def check_pair(images, masks, labels=None, where="data"):
    """Validate images (N, C, H, W) and masks (N, H, W) in {0, 1}; clear errors otherwise."""
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"{where}: expected images (N, C, H, W) or (N, H, W), got {images.shape}")
    if masks.ndim != 3:
        raise ValueError(f"{where}: expected masks (N, H, W), got {masks.shape}")
    if images.shape[0] != masks.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {masks.shape[0]} masks")
    if images.shape[0] == 0:
        raise ValueError(f"{where}: no images (an empty array)")
    if images.dtype.kind not in "biuf":
        raise ValueError(f"{where}: images hold {images.dtype} values; expected numbers")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
        raise ValueError(f"{where}: the data contains NaN/Inf values in image(s) {bad[:8].tolist()}"
                         f"{' ...' if len(bad) > 8 else ''}: a data problem (fix or drop those images), "
                         f"not a training one")
    if images.shape[2:] != masks.shape[1:]:
        raise ValueError(f"{where}: images are {images.shape[2:]} but masks are {masks.shape[1:]}")
    vals = np.unique(masks)
    if not np.isin(vals, (0, 1)).all():
        hint = " (divide a {0, 255} mask by 255)" if vals.max() == 255 else \
            " (instance labels? pass them as labels= and the mask as labels > 0)" if np.issubdtype(masks.dtype, np.integer) else ""
        raise ValueError(f"{where}: masks must be binary {{0, 1}}, found values {vals[:6].tolist()}{hint}")
    if labels is not None and np.asarray(labels).shape != masks.shape:
        raise ValueError(f"{where}: instance labels {np.asarray(labels).shape} and masks {masks.shape} differ")
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
    return images.astype(np.float32), masks.astype(np.uint8)


class SegmentationDataset:
    """images (N, C, H, W), masks (N, H, W) in {0, 1}, optional instance labels (N, H, W).
    With weight_map=True the U-Net weight map (w0, sigma) is precomputed from the segmentation the net
    is trained on: the instance labels restricted to the mask, so the gaps between touching cells
    are background and carry the border term."""

    def __init__(self, images, masks, labels=None, weight_map=False, w0=10.0, sigma=5.0):
        self.images, self.masks = check_pair(images, masks, labels)
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        if weight_map:
            if self.labels is None:
                raise ValueError("SegmentationDataset: weight_map=True needs instance labels")
            self.weights = _weight_map(self.labels, w0, sigma, mask=self.masks)
        else:
            self.weights = None

    def __len__(self):
        return len(self.images)

    def item(self, i):
        """(image (C, H, W), stack (3, H, W) float32: mask, instance labels, weight)."""
        H, W = self.masks.shape[1:]
        lab = self.labels[i] if self.labels is not None else self.masks[i]
        w = self.weights[i] if self.weights is not None else np.ones((H, W), np.float32)
        return self.images[i], np.stack([self.masks[i], lab, w]).astype(np.float32)


class DataLoader:
    """Shuffled, augmented batches with random access by (epoch, batch).

    The shuffle of epoch e comes from default_rng([seed, e]) and the augmentation of batch b from
    default_rng([seed, e, b]), so a run resumed at (epoch, batch) sees exactly the batches it would
    have seen: nothing has to be replayed and the loader's whole state is (seed, epoch, batch).

    Each batch: dict(image (B, C, h, w) float32, mask (B, h, w) int64, labels (B, h, w) int32,
    weight (B, h, w) float32).
    """

    def __init__(self, dataset, batch_size=8, augment=None, shuffle=True, seed=0, drop_last=True):
        if batch_size < 1 or batch_size > len(dataset):
            raise ValueError(f"DataLoader: batch_size must be in 1..{len(dataset)} (the dataset size), got {batch_size}")
        self.dataset, self.batch_size, self.augment, self.shuffle = dataset, batch_size, augment, shuffle
        self.drop_last, self.seed = drop_last, int(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, epoch, start=0):
        """Batches start, start+1, ... of epoch ``epoch``."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, len(self)):
            rng = np.random.default_rng([self.seed, epoch, b])
            imgs, stacks = [], []
            for i in order[b * self.batch_size:(b + 1) * self.batch_size]:
                img, st = self.dataset.item(i)
                if self.augment is not None:
                    img, st = self.augment(img, st, rng)
                imgs.append(img)
                stacks.append(st)
            st = np.stack(stacks)
            yield dict(image=np.stack(imgs).astype(np.float32), mask=st[:, 0].astype(np.int64),
                       labels=st[:, 1].astype(np.int32), weight=st[:, 2].astype(np.float32))
