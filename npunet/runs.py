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


def _data_shape(cfg):
    """(number of images, channels, H, W, bytes of the data in memory) of the config's data, from
    shapes alone (an .npz's array headers: nothing is generated or inflated)."""
    if cfg["data"] == "synthetic":
        n, S = cfg["n_train"] + cfg["n_val"], cfg["size"]
        return n, 1, S, S, n * S * S * (4 + 8 + 8) * 2  # images, labels, masks; x2 while generated
    if cfg["data"] == "nuclei":
        return 16, 1, 128, 128, 16 * 128 * 128 * 24
    import zipfile
    from .io import KINDS, InputError, check_npz_fits, sniff
    path = cfg["data"]
    try:
        kind = sniff(path)
        if kind != "npz":
            raise InputError(f"'{path}' is {KINDS.get(kind, kind)}, not an .npz archive of images and masks")
        nbytes = check_npz_fits(path)
        with zipfile.ZipFile(path) as zf, zf.open("images.npy") as f:
            v = np.lib.format.read_magic(f)
            shape = (np.lib.format.read_array_header_1_0 if v == (1, 0) else np.lib.format.read_array_header_2_0)(f)[0]
    except (InputError, KeyError) as e:
        raise ConfigError(f"config key 'data': {e if isinstance(e, InputError) else repr(path) + ' has no images array'}") from None
    if len(shape) != 4:
        raise ConfigError(f"config key 'data': '{path}' images have shape {shape}; expected (N, C, H, W)")
    return shape[0], shape[1], shape[2], shape[3], nbytes * 2  # the file's arrays and the split copies


def estimate_memory(cfg, data_shape=None):
    """Bytes one training run of ``cfg`` needs, from shapes alone (nothing is allocated): the data,
    the model (weights, gradients, optimiser state) and one training step (the activations every layer
    keeps for backward, ``npunet.summary``'s accounting, plus as much again for the gradients in flight).
    Returns dict(data, model, step, total, params).  A model that cannot take the data's image size
    raises ConfigError naming the layer."""
    from . import init
    from .models.summary import trace_shapes
    n, ch, H, W, data_bytes = data_shape or _data_shape(cfg)
    if cfg["augment"].get("crop"):
        H = W = min(H, cfg["augment"]["crop"])
    cls = C.check_model_config(cfg)
    try:
        with init.shapes_only():
            model = cls(**cfg["model_config"])
        params = model.num_parameters()
        _, calls = trace_shapes(model, (min(cfg["batch_size"], max(n, 1)), ch, H, W), np.float32)
    except TypeError:
        raise  # the constructor's type check: already one line naming the model and the argument
    except (ValueError, OverflowError) as e:
        raise ConfigError(f"config key 'model_config' ({cfg['model']}, images {ch}x{H}x{W}): {e}") from None
    seen, kept = set(), 0
    for m, inputs, out in calls:
        arrays, own = m.kept(inputs, out)
        kept += own
        for a in arrays:
            if id(a) not in seen:
                seen.add(id(a))
                kept += a.nbytes
    model_bytes = params * 4 * (4 if cfg["optimizer"] == "adam" else 3)
    step = 2 * kept
    return dict(data=int(data_bytes), model=int(model_bytes), step=int(step), params=int(params),
                total=int(data_bytes + model_bytes + step))


def check_memory(cfg, data_shape=None):
    """Refuse (ConfigError) a config whose estimated memory (:func:`estimate_memory`) exceeds the memory
    available to this process, before anything is allocated.  Returns the estimate."""
    from .io import _gib, available_memory
    est = estimate_memory(cfg, data_shape)
    free = available_memory()
    if free is not None and est["total"] > free:
        raise ConfigError(f"this config needs about {_gib(est['total'])} (data {_gib(est['data'])}, model "
                          f"{_gib(est['model'])} for {est['params']:,} parameters, one training step "
                          f"{_gib(est['step'])}) but only {_gib(free)} of memory is available; reduce size, "
                          f"batch_size, n_train or the model's channels/depth")
    return est


def build_run(cfg, progress=True, log=print, data=None):
    """The Trainer for a training config (validated and completed with :func:`npunet.config.merge`):
    the seed, the model, the data split, the loader with its augmentation, the optimiser and
    schedule, the run folder.  data: (train, val) to use instead of the config's data source."""
    from . import init, optim
    from .data import Augment, DataLoader, SegmentationDataset
    from .train import Trainer
    cfg = C.merge(cfg)  # re-validates a dict that did not come through merge
    cls = C.check_model_config(cfg)
    if data is not None:
        x = np.asarray(data[0][0])
        check_memory(cfg, (len(x), x.shape[1], x.shape[2], x.shape[3], 0))  # the data is in memory already
    else:
        check_memory(cfg)
    init.manual_seed(cfg["seed"])
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
    opt = optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]) if cfg["optimizer"] == "adam" else \
        optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    sched = {"cosine": lambda: optim.CosineAnnealingLR(opt, cfg["epochs"]),
             "step": lambda: optim.StepLR(opt, max(1, cfg["epochs"] // 3), 0.1), "none": lambda: None}[cfg["schedule"]]()
    os.makedirs(cfg["out"], exist_ok=True)
    trainer = Trainer(model, loss, opt, loader, scheduler=sched, val_data=val, use_weight_map=use_wm,
                      checkpoint_path=os.path.join(cfg["out"], "checkpoint.npz"), config=cfg, progress=progress, log=log)
    trainer.input_range = input_range(np.asarray(train[0]))
    return trainer
