"""Training runs from one config dict: the code behind both ``npunet train`` and ``npunet demo``.
The config's keys, types, ranges and defaults: :mod:`npunet.config`."""
import os

import numpy as np

from . import config as C
from .config import ConfigError

DEFAULT_TRAIN_CONFIG = C.defaults()

# The classroom presets of ``npunet demo --model``: a config's "model" and "model_config".
PRESETS = {"unet": ("UNet", C.MODEL_DEFAULTS["UNet"]), "unetpp": ("UNetPlusPlus", C.MODEL_DEFAULTS["UNetPlusPlus"]),
           "unet3plus": ("UNet3Plus", C.MODEL_DEFAULTS["UNet3Plus"])}
for _enc in ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0"):  # the encoder U-Nets
    PRESETS[_enc] = ("EncoderUNet", dict(C.MODEL_DEFAULTS["EncoderUNet"], encoder_name=_enc))


def make_loss(name):
    """The loss named in a config: ce | bce | dice | iou | focal | bce_dice | focal_msssim_iou."""
    from . import losses as L
    table = {"ce": L.CrossEntropyLoss, "bce": L.BCEWithLogitsLoss, "dice": L.DiceLoss, "iou": L.IoULoss,
             "focal": L.FocalLoss, "bce_dice": L.CombinedLoss.unetpp,
             "focal_msssim_iou": lambda: L.CombinedLoss.unet3plus(ms_ssim_scales=3)}
    if name not in table:
        raise ConfigError(f"config key 'loss': expected one of {', '.join(map(repr, table))}, got {name!r}")
    return table[name]()


def load_data_file(path):
    """(images (N, C, H, W), masks (N, H, W), labels or None) from an .npz data file, validated."""
    from .data import check_pair
    from .io import load_npz
    d = load_npz(path)
    for k in ("images", "masks"):
        if k not in d:
            raise ConfigError(f"config key 'data': '{path}' needs arrays 'images' (N, C, H, W) and 'masks' (N, H, W); "
                              f"found {sorted(d)}")
    images, masks = check_pair(d["images"], d["masks"], d.get("labels"), where=path)
    return images, masks, d.get("labels")


def split_data(cfg):
    """(train, val): each (images, masks, labels or None), as the config says."""
    from .data import make_cells, nuclei_split
    if cfg["data"] == "synthetic":
        x, lab, m = make_cells(cfg["n_train"] + cfg["n_val"], cfg["size"], seed=cfg["seed"])
        n = cfg["n_train"]
        return (x[:n], m[:n], lab[:n]), (x[n:], m[n:], lab[n:])
    if cfg["data"] == "nuclei":
        s = nuclei_split(128, cfg["seed"])
        return (s["train"][0], s["train"][2], s["train"][1]), (s["test"][0], s["test"][2], s["test"][1])
    x, m, lab = load_data_file(cfg["data"])
    n = len(x) - cfg["n_val"]
    if n < 1:
        raise ConfigError(f"config key 'n_val': '{cfg['data']}' has {len(x)} images; n_val = {cfg['n_val']} "
                          f"leaves none for training")
    return (x[:n], m[:n], None if lab is None else lab[:n]), (x[n:], m[n:], None if lab is None else lab[n:])


def input_range(images):
    """The typical intensity range of training images: the mean of the per-image minima and maxima.
    Recorded in checkpoints so that ``predict`` maps any image file onto it."""
    flat = images.reshape(len(images), -1)
    return [float(flat.min(axis=1).mean()), float(flat.max(axis=1).mean())]


def build_run(cfg, progress=True, log=print, data=None):
    """The Trainer for a training config (validated and completed with :func:`npunet.config.merge`):
    the seed, the model, the data split, the loader with its augmentation, the optimiser and
    schedule, the run folder.  data: (train, val) to use instead of the config's data source."""
    from . import init, optim
    from .data import Augment, DataLoader, SegmentationDataset
    from .train import Trainer
    cfg = C.merge({}, cfg)  # re-validates a dict that did not come through merge
    init.manual_seed(cfg["seed"])
    cls = C.check_model_config(cfg)
    model = cls(**cfg["model_config"])
    train, val = data if data is not None else split_data(cfg)
    if cfg["batch_size"] > len(train[0]):
        raise ConfigError(f"config key 'batch_size': {cfg['batch_size']} is more than the {len(train[0])} training images")
    use_wm = cfg["weight_map"] and train[2] is not None
    loss = make_loss(cfg["loss"])
    if use_wm and not loss.accepts_weight:
        raise ConfigError(f"config keys 'weight_map' and 'loss': the loss {cfg['loss']!r} cannot use a weight map; "
                          f"set \"weight_map\": false or choose 'ce', 'bce' or 'bce_dice'")
    ds = SegmentationDataset(train[0], train[1], train[2], weight_map=use_wm)
    loader = DataLoader(ds, batch_size=cfg["batch_size"], augment=Augment(**cfg["augment"]), seed=cfg["seed"])
    params = list(model.parameters())
    opt = {"adam": lambda: optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
           "adamw": lambda: optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
           "sgd": lambda: optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                                    weight_decay=cfg["weight_decay"])}[cfg["optimizer"]]()
    E = cfg["epochs"]
    sched = {"cosine": lambda: optim.CosineAnnealingLR(opt, E),
             "step": lambda: optim.StepLR(opt, max(1, E // 3), 0.1),
             "multistep": lambda: optim.MultiStepLR(opt, [max(1, E // 2), max(1, 3 * E // 4)], 0.1),
             "plateau": lambda: optim.ReduceLROnPlateau(opt, "min", factor=0.5, patience=max(1, E // 10)),
             "onecycle": lambda: optim.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=E),
             "none": lambda: None}[cfg["schedule"]]()
    os.makedirs(cfg["out"], exist_ok=True)
    trainer = Trainer(model, loss, opt, loader, scheduler=sched, val_data=val, use_weight_map=use_wm,
                      checkpoint_path=os.path.join(cfg["out"], "checkpoint.npz"), config=cfg, progress=progress, log=log)
    trainer.input_range = input_range(np.asarray(train[0]))
    return trainer
