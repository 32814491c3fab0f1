"""Training runs from one config dict: the code behind both ``npunet train`` and ``npunet demo``."""
import os

DEFAULT_TRAIN_CONFIG = {
    "model": "UNet",
    "model_config": {"in_channels": 1, "num_classes": 2, "base_channels": 16, "depth": 3, "padding": "same",
                     "batch_norm": True},
    "data": "synthetic",          # "synthetic", "nuclei", or an .npz with images (N,C,H,W), masks (N,H,W) [, labels]
    "n_train": 48, "n_val": 8, "size": 128,
    "loss": "ce",                 # ce | bce_dice | focal_msssim_iou | dice | iou | focal | bce
    "weight_map": True,
    "optimizer": "adam", "lr": 0.003, "momentum": 0.99, "weight_decay": 0.0,
    "schedule": "cosine",         # cosine | step | none
    "epochs": 20, "batch_size": 8, "seed": 0,
    "augment": {"flips": True, "elastic_p": 0.3, "gray": True},
    "out": "npunet_run",
}

# The classroom presets of ``npunet demo --model``: a config's "model" and "model_config".
PRESETS = {
    "unet": ("UNet", dict(in_channels=1, num_classes=2, base_channels=16, depth=3, padding="same", batch_norm=True)),
    "unetpp": ("UNetPlusPlus", dict(in_channels=1, num_classes=2, filters=(8, 16, 32, 64), depth=3, deep_supervision=True)),
    "unet3plus": ("UNet3Plus", dict(in_channels=1, num_classes=2, filters=(8, 16, 32, 64, 128), cat_channels=8,
                                    deep_supervision=True)),
}


def make_loss(name):
    """The loss named in a config: ce | bce | dice | iou | focal | bce_dice | focal_msssim_iou."""
    from . import losses as L
    table = {"ce": L.CrossEntropyLoss, "bce": L.BCEWithLogitsLoss, "dice": L.DiceLoss, "iou": L.IoULoss,
             "focal": L.FocalLoss, "bce_dice": L.CombinedLoss.unetpp,
             "focal_msssim_iou": lambda: L.CombinedLoss.unet3plus(ms_ssim_scales=3)}
    if name not in table:
        raise SystemExit(f"npunet train: unknown loss {name!r}; choose from {sorted(table)}")
    return table[name]()


def load_data_file(path):
    from .data import check_pair
    from .io import load_npz
    d = load_npz(path)
    for k in ("images", "masks"):
        if k not in d:
            raise SystemExit(f"npunet train: '{path}' needs arrays 'images' (N, C, H, W) and 'masks' (N, H, W); "
                             f"found {sorted(d)}")
    images, masks = check_pair(d["images"], d["masks"], d.get("labels"), where=path)
    return images, masks, d.get("labels")


def build_run(cfg, progress=True, log=print):
    """The Trainer for a training config dict (see DEFAULT_TRAIN_CONFIG): the seed, the model, the
    data split, the loader with its augmentation, the optimiser and schedule, the run folder."""
    from . import init, optim
    from .data import Augment, DataLoader, SegmentationDataset, make_cells, nuclei_split
    from .train import MODEL_CLASSES, Trainer
    init.manual_seed(cfg["seed"])
    if cfg["model"] not in MODEL_CLASSES:
        raise SystemExit(f"npunet train: unknown model {cfg['model']!r}; choose from {sorted(MODEL_CLASSES)}")
    model = MODEL_CLASSES[cfg["model"]](**cfg["model_config"])
    if cfg["data"] == "synthetic":
        x, lab, m = make_cells(cfg["n_train"] + cfg["n_val"], cfg["size"], seed=cfg["seed"])
        n = cfg["n_train"]
        train, val = (x[:n], m[:n], lab[:n]), (x[n:], m[n:], lab[n:])
    elif cfg["data"] == "nuclei":
        s = nuclei_split(128, cfg["seed"])
        train, val = (s["train"][0], s["train"][2], s["train"][1]), (s["test"][0], s["test"][2], s["test"][1])
    else:
        x, m, lab = load_data_file(cfg["data"])
        n = len(x) - cfg["n_val"]
        if n < 1:
            raise SystemExit(f"npunet train: '{cfg['data']}' has {len(x)} images; need more than n_val = {cfg['n_val']}")
        train = (x[:n], m[:n], None if lab is None else lab[:n])
        val = (x[n:], m[n:], None if lab is None else lab[n:])
    use_wm = cfg["weight_map"] and train[2] is not None
    ds = SegmentationDataset(train[0], train[1], train[2], weight_map=use_wm)
    loader = DataLoader(ds, batch_size=min(cfg["batch_size"], len(ds)), augment=Augment(**cfg["augment"]), seed=cfg["seed"])
    params = list(model.parameters())
    opt = optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]) if cfg["optimizer"] == "adam" else \
        optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    sched = {"cosine": lambda: optim.CosineAnnealingLR(opt, cfg["epochs"]),
             "step": lambda: optim.StepLR(opt, max(1, cfg["epochs"] // 3), 0.1), "none": lambda: None}[cfg["schedule"]]()
    os.makedirs(cfg["out"], exist_ok=True)
    trainer = Trainer(model, make_loss(cfg["loss"]), opt, loader, scheduler=sched, val_data=val, use_weight_map=use_wm,
                      checkpoint_path=os.path.join(cfg["out"], "checkpoint.npz"), config=cfg, progress=progress, log=log)
    return trainer
