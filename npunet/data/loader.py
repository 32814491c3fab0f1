"""A dataset of (image, mask, instance labels, weight map) and a seeded batch loader."""
import numpy as np

from .normalize import normalize
from .weightmap import weight_map as _weight_map


def check_pair(images, masks, labels=None, where="data", num_classes=2):
    """Validate images (N, C, H, W) and masks (N, H, W) in {0, 1} (or 0..num_classes-1); clear errors
    otherwise.  Lists of (C, H, W) images and (H, W) masks of different sizes are checked pair by pair
    and returned as lists."""
    if isinstance(images, (list, tuple)) and len({np.shape(im)[-2:] for im in images}) > 1:
        if len(images) != len(masks):
            raise ValueError(f"{where}: {len(images)} images but {len(masks)} masks")
        labs = [None] * len(images) if labels is None else labels
        pairs = [check_pair(im[None], np.asarray(m)[None], None if lb is None else np.asarray(lb)[None],
                            f"{where} (image {i})", num_classes) for i, (im, m, lb) in enumerate(zip(images, masks, labs))]
        return [p[0][0] for p in pairs], [p[1][0] for p in pairs]
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
    if num_classes > 2 and not np.isin(vals, np.arange(num_classes)).all():
        raise ValueError(f"{where}: masks must hold class indices 0..{num_classes - 1}, found values {vals[:8].tolist()}")
    if num_classes <= 2 and not np.isin(vals, (0, 1)).all():
        hint = " (divide a {0, 255} mask by 255)" if vals.max() == 255 else \
            " (instance labels? pass them as labels= and the mask as labels > 0)" if np.issubdtype(masks.dtype, np.integer) else ""
        raise ValueError(f"{where}: masks must be binary {{0, 1}}, found values {vals[:6].tolist()}{hint}")
    if labels is not None and np.asarray(labels).shape != masks.shape:
        raise ValueError(f"{where}: instance labels {np.asarray(labels).shape} and masks {masks.shape} differ")
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
    return images.astype(np.float32), masks.astype(np.uint8)


class SegmentationDataset:
    """images (N, C, H, W), masks (N, H, W) in {0, 1} (0..num_classes-1 for multi-class), optional
    instance labels (N, H, W).  Images of different sizes: lists of (C, H, W) and (H, W) arrays (the
    loader's augmentation must crop them to one size).
    With weight_map=True the U-Net weight map (w0, sigma) is precomputed from the segmentation the net
    is trained on: the instance labels restricted to the mask (mask > 0), so the gaps between touching
    cells are background and carry the border term."""

    def __init__(self, images, masks, labels=None, weight_map=False, w0=10.0, sigma=5.0, num_classes=2):
        self.images, self.masks = check_pair(images, masks, labels, num_classes=num_classes)
        if labels is None:
            self.labels = None
        elif isinstance(self.masks, list):
            self.labels = [np.asarray(lb, np.int32) for lb in labels]
        else:
            self.labels = np.asarray(labels, np.int32)
        if weight_map:
            if self.labels is None:
                raise ValueError("SegmentationDataset: weight_map=True needs instance labels (connected components "
                                 "of the masks are one choice: npunet.metrics.label_components)")
            self.weights = [_weight_map(lb, w0, sigma, mask=(m > 0).astype(np.uint8))
                            for lb, m in zip(self.labels, self.masks)]
            if not isinstance(self.masks, list):
                self.weights = np.stack(self.weights)
        else:
            self.weights = None

    def __len__(self):
        return len(self.images)

    def item(self, i):
        """(image (C, H, W), stack (3, H, W) float32: mask, instance labels, weight)."""
        H, W = self.masks[i].shape
        lab = self.labels[i] if self.labels is not None else self.masks[i]
        w = self.weights[i] if self.weights is not None else np.ones((H, W), np.float32)
        return self.images[i], np.stack([self.masks[i], lab, w]).astype(np.float32)

    def __getitem__(self, i):
        """(image (C, H, W) float32, mask (H, W) uint8), as a PyTorch Dataset returns them."""
        return self.images[i], self.masks[i]


def _item(dataset, i):
    """(image (C, H, W), stack (3, H, W): mask, labels, weight) from an npunet dataset (.item) or any
    object whose __getitem__ returns (image, mask), (image, mask, weight) or a dict with keys image,
    mask [, labels, weight]; image (C, H, W) or (H, W)."""
    if hasattr(dataset, "item"):
        return dataset.item(i)
    it = dataset[i]
    if isinstance(it, dict):
        img, mask, lab, w = it["image"], it["mask"], it.get("labels"), it.get("weight")
    elif isinstance(it, (tuple, list)) and len(it) in (2, 3):
        img, mask, lab, w = it[0], it[1], None, (it[2] if len(it) == 3 else None)
    else:
        raise ValueError(f"DataLoader: dataset[{i}] returned {type(it).__name__}; expected (image, mask), "
                         f"(image, mask, weight) or a dict with 'image' and 'mask'")
    img, mask = np.asarray(img, np.float32), np.asarray(mask)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3 or mask.shape != img.shape[1:]:
        raise ValueError(f"DataLoader: dataset[{i}] gave image {img.shape} and mask {mask.shape}; expected "
                         f"image (C, H, W) or (H, W) and mask (H, W) of the same size")
    ones = np.ones(mask.shape, np.float32)
    return img, np.stack([mask, mask if lab is None else np.asarray(lab), ones if w is None else np.asarray(w)]
                         ).astype(np.float32)


class DataLoader:
    """Shuffled, augmented batches with random access by (epoch, batch).

    The shuffle of epoch e comes from default_rng([seed, e]) and the augmentation of batch b from
    default_rng([seed, e, b]), so a run resumed at (epoch, batch) sees exactly the batches it would
    have seen: nothing has to be replayed and the loader's whole state is (seed, epoch, batch).
    ``for batch in loader:`` runs epoch ``loader.epoch`` and then advances it (a new shuffle and new
    augmentation each time, as ``iterate(epoch)``); ``set_epoch(e)`` sets it, e.g. after a resume.

    dataset: a SegmentationDataset, or any object with __len__ and __getitem__ returning (image,
    mask) as PyTorch users write them (also (image, mask, weight) or a dict with image, mask
    [, labels, weight]).  normalization: a record of npunet.data.normalize applied to each image
    before augmentation (None: as given).

    Each batch: dict(image (B, C, h, w) float32, mask (B, h, w) int64, labels (B, h, w) int32,
    weight (B, h, w) float32).
    """

    def __init__(self, dataset, batch_size=8, augment=None, shuffle=True, seed=0, drop_last=True, normalization=None):
        if batch_size < 1 or batch_size > len(dataset):
            raise ValueError(f"DataLoader: batch_size must be in 1..{len(dataset)} (the dataset size), got {batch_size}")
        self.dataset, self.batch_size, self.augment, self.shuffle = dataset, batch_size, augment, shuffle
        self.drop_last, self.seed, self.normalization = drop_last, int(seed), normalization
        self.epoch = 0

    def set_epoch(self, epoch):
        """The epoch the next ``for batch in loader:`` runs."""
        self.epoch = int(epoch)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iterate(epoch)

    def iterate(self, epoch, start=0):
        """Batches start, start+1, ... of epoch ``epoch``."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, len(self)):
            rng = np.random.default_rng([self.seed, epoch, b])
            imgs, stacks = [], []
            for i in order[b * self.batch_size:(b + 1) * self.batch_size]:
                img, st = _item(self.dataset, i)
                if self.normalization is not None:
                    img = normalize(img, self.normalization)
                if self.augment is not None:
                    img, st = self.augment(img, st, rng)
                imgs.append(img)
                stacks.append(st)
            if len({im.shape for im in imgs}) > 1:
                raise ValueError(f"DataLoader: batch {b} holds images of sizes "
                                 f"{sorted({im.shape[1:] for im in imgs})}; crop them to one size "
                                 f"(Augment(crop=...)) or use batch_size=1")
            st = np.stack(stacks)
            yield dict(image=np.stack(imgs).astype(np.float32), mask=st[:, 0].astype(np.int64),
                       labels=st[:, 1].astype(np.int32), weight=st[:, 2].astype(np.float32))
