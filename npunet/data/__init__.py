"""Data: the U-Net weight map, synthetic touching cells, the DSB 2018 nuclei image,
augmentation, batching and overlap-tile prediction."""
from .weightmap import weight_map
from .synthetic import make_cells, make_cell_image, make_noise_task, touching_borders
from .nuclei import load_nuclei, nuclei_split
from .augment import Augment, elastic, elastic_displacement, flip_rotate, gray_values, random_crop
from .loader import DataLoader, SegmentationDataset, check_pair
from .tiling import overlap_tile, predict_image, predict_same


def kfold_indices(n, k=5, seed=0):
    """K-fold cross-validation: a list of k (train_idx, val_idx) pairs covering range(n) once each as validation."""
    import numpy as np
    if not 2 <= k <= n:
        raise ValueError(f"kfold_indices: need 2 <= k <= n, got k={k}, n={n}")
    order = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(order, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(folds[i])) for i in range(k)]


__all__ = ["weight_map", "make_cells", "make_cell_image", "make_noise_task", "touching_borders", "load_nuclei",
           "nuclei_split", "Augment", "elastic", "elastic_displacement", "flip_rotate", "gray_values", "random_crop",
           "DataLoader", "SegmentationDataset", "check_pair", "overlap_tile", "predict_image", "predict_same",
           "kfold_indices"]
