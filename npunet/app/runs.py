"""Training runs from one config dict: the code behind both ``npunet train`` and ``npunet demo``.
The config's keys, types, ranges and defaults: :mod:`npunet.config`."""
import os

import numpy as np

from . import config as C
from .config import ConfigError
from ..models.registry import presets

DEFAULT_TRAIN_CONFIG = C.defaults()

# The classroom presets of ``npunet demo --model``: a config's "model" and "model_config" (the model registry's).
PRESETS = presets()


def make_loss(name):
    """The loss named in a config: ce | bce | dice | iou | focal | bce_dice | focal_msssim_iou."""
    from .. import losses as L
    table = {"ce": L.CrossEntropyLoss, "bce": L.BCEWithLogitsLoss, "dice": L.DiceLoss, "iou": L.IoULoss,
             "focal": L.FocalLoss, "bce_dice": L.CombinedLoss.unetpp,
             "focal_msssim_iou": lambda: L.CombinedLoss.unet3plus(ms_ssim_scales=3)}
    if name not in table:
        raise ConfigError(f"config key 'loss': expected one of {', '.join(map(repr, table))}, got {name!r}")
    return table[name]()


def load_data_file(path):
    """(images (N, C, H, W), masks (N, H, W), labels or None) from an .npz data file, validated."""
    from ..data import check_pair
    from ..io import load_npz
    d = load_npz(path)
    for k in ("images", "masks"):
        if k not in d:
            raise ConfigError(f"config key 'data': '{path}' needs arrays 'images' (N, C, H, W) and 'masks' (N, H, W); "
                              f"found {sorted(d)}")
    images, masks = check_pair(d["images"], d["masks"], d.get("labels"), where=path)
    return images, masks, d.get("labels")


def _explicit(cfg, user, key):
    """Whether the user chose ``key`` (a top-level key or ('model_config', k)): from the user's own
    config when given, else a value that differs from the default."""
    if isinstance(key, tuple):
        if user is not None:
            return key[1] in (user.get("model_config") or {})
        d = C.MODEL_DEFAULTS.get(cfg["model"], {})
        return key[1] in cfg["model_config"] and cfg["model_config"][key[1]] != d.get(key[1])
    if user is not None:
        return key in user
    return cfg[key] != C.SCHEMA[key].default


def _adapt_n_val(cfg, n, where, user, log):
    """n_val for a data source of n images: the config's when given (checked), else ~20% (1..8)."""
    if n < 2:
        raise ConfigError(f"config key 'data': {where} has {n} image; training needs at least 2 "
                          f"(one to train on, one to validate)")
    if _explicit(cfg, user, "n_val"):
        if cfg["n_val"] >= n:
            raise ConfigError(f"config key 'n_val': {where} has {n} images; n_val = {cfg['n_val']} leaves none for "
                              f"training (use at most {n - 1})")
        return cfg["n_val"]
    n_val = max(1, min(8, round(0.2 * n)))
    if log:
        log(f"n_val {n_val}: {n_val} of the {n} images held out for validation (default for this data; set "
            f"\"n_val\" in the config to choose)")
    return n_val


def _components(masks):
    """Instance labels from the connected components (4-connected) of each mask's foreground (mask > 0)."""
    from ..metrics import label_components
    return [label_components(np.asarray(m) > 0)[0] for m in masks]


def _stack(items):
    """One array when every item has one shape (what the .npz path and cv expect), else the list."""
    return np.stack(items) if len({np.shape(a) for a in items}) == 1 else list(items)


def load_data(cfg, user=None, log=print):
    """The config's data, split and described: dict(train=(images, masks, labels or None), val=(...),
    kind ("synthetic" | "nuclei" | "npz" | "files"), mapping (mask value/colour -> class, or None),
    in_channels, num_classes, n_val).  Images are raw values; normalisation is build_run's."""
    from ..data import make_cells, nuclei_split
    info = dict(mapping=None, in_channels=1, num_classes=2, n_val=cfg["n_val"])
    if cfg["data"] == "synthetic":
        x, lab, m = make_cells(cfg["n_train"] + cfg["n_val"], cfg["size"], seed=cfg["seed"])
        n = cfg["n_train"]
        return dict(info, kind="synthetic", train=(x[:n], m[:n], lab[:n]), val=(x[n:], m[n:], lab[n:]))
    if cfg["data"] == "nuclei":
        s = nuclei_split(128, cfg["seed"])
        return dict(info, kind="nuclei", train=(s["train"][0], s["train"][2], s["train"][1]),
                    val=(s["test"][0], s["test"][2], s["test"][1]))
    from ..data.files import is_file_source, load_folder
    if not is_file_source(cfg["data"]):
        x, m, lab = load_data_file(cfg["data"])
        n_val = _adapt_n_val(cfg, len(x), f"'{cfg['data']}'", user, log)
        n = len(x) - n_val
        return dict(info, kind="npz", in_channels=x.shape[1], num_classes=max(2, int(m.max()) + 1), n_val=n_val,
                    train=(x[:n], m[:n], None if lab is None else lab[:n]),
                    val=(x[n:], m[n:], None if lab is None else lab[n:]))
    d = load_folder(cfg["data"], log=log)
    N = len(d["images"])
    n_val = _adapt_n_val(cfg, N, f"'{cfg['data']}'", user, log)
    order = np.random.default_rng(cfg["seed"]).permutation(N)
    vi, ti = np.sort(order[:n_val]), np.sort(order[n_val:])
    if log:
        names = [d["names"][i] for i in vi]
        log(f"validation images: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    binary = d["num_classes"] == 2
    labels = _components(d["masks"]) if binary else None  # instances exist only for a binary mask

    def take(idx):
        return (_stack([d["images"][i] for i in idx]), _stack([d["masks"][i] for i in idx]),
                None if labels is None else _stack([labels[i] for i in idx]))
    return dict(kind="files", train=take(ti), val=take(vi), mapping=d["mapping"], in_channels=d["in_channels"],
                num_classes=d["num_classes"], n_val=n_val, names=[d["names"][i] for i in vi], labels_from="components")


def split_data(cfg, user=None, log=None):
    """(train, val): each (images, masks, labels or None), as the config says (raw values)."""
    d = load_data(cfg, user, log)
    return d["train"], d["val"]


def _infer_model_config(cfg, user, in_channels, num_classes, log):
    """Take in_channels and num_classes from the data unless the config sets them; a clash is an error."""
    mc = cfg["model_config"]
    if _explicit(cfg, user, ("model_config", "in_channels")):
        if mc["in_channels"] != in_channels:
            raise ConfigError(f"config key 'model_config.in_channels': {mc['in_channels']}, but the images have "
                              f"{in_channels} channel(s); remove the key to take it from the data")
    mc["in_channels"] = in_channels
    if _explicit(cfg, user, ("model_config", "num_classes")):
        ok = mc["num_classes"] == num_classes or (num_classes == 2 and mc["num_classes"] == 1)
        if not ok:
            raise ConfigError(f"config key 'model_config.num_classes': {mc['num_classes']}, but the masks hold "
                              f"{num_classes} classes; remove the key to take it from the data")
    else:
        mc["num_classes"] = num_classes
    if log and num_classes > 2:
        log(f"num_classes {num_classes} from the masks: {cfg['loss']!r} loss over {num_classes} classes, "
            f"per-class Dice/IoU and their mean")


def _train_crop(cfg, model, images):
    """The random-crop side for training images, or None when every image can go in whole: one size,
    not larger than ``size``, a size the model takes, square if flips rotate them."""
    from ..models.sizes import is_legal
    sides = [s for im in images for s in np.shape(im)[-2:]]
    sizes = {tuple(np.shape(im)[-2:]) for im in images}
    if cfg["augment"].get("crop") is not None:
        return cfg["augment"]["crop"]
    depth = getattr(model, "depth", 4)
    valid = getattr(model, "padding", "same") == "valid"
    legal = (lambda s: is_legal(s, depth, "valid")) if valid else (lambda s: s % 2 ** depth == 0)
    if len(sizes) == 1 and max(sides) <= cfg["size"] and all(legal(s) for s in sides) and \
            (len(set(sides)) == 1 or not cfg["augment"].get("flips", True)):
        return None
    c = min(cfg["size"], min(sides))
    if valid:
        ok = [s for s in range(c, 0, -1) if legal(s)]
        if not ok:
            raise ConfigError(f"config key 'size': crops of {c} px are smaller than the smallest input of a depth-"
                              f"{depth} valid U-Net; raise 'size' or use larger images or \"padding\": \"same\"")
        return ok[0]
    c -= c % 2 ** depth
    if c < 2 ** depth:
        raise ConfigError(f"config key 'size': the smallest image side is {min(sides)} px, less than the "
                          f"{2 ** depth} px a depth-{depth} model needs")
    return c


def input_range(images):
    """The typical intensity range of training images: the mean of the per-image minima and maxima.
    Recorded in checkpoints so that ``predict`` maps any image file onto it."""
    return [float(np.mean([np.min(im) for im in images])), float(np.mean([np.max(im) for im in images]))]


def _data_shape(cfg):
    """(number of images, channels, H, W, bytes of the data in memory) of the config's data, from
    shapes alone (an .npz's array headers: nothing is generated or inflated)."""
    if cfg["data"] == "synthetic":
        n, S = cfg["n_train"] + cfg["n_val"], cfg["size"]
        return n, 1, S, S, n * S * S * (4 + 8 + 8) * 2  # images, labels, masks; x2 while generated
    if cfg["data"] == "nuclei":
        return 16, 1, 128, 128, 16 * 128 * 128 * 24
    import zipfile
    from ..io import KINDS, InputError, check_npz_fits, sniff
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
    from .. import init
    from ..models.summary import trace_shapes
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
    from ..io import _gib, available_memory
    est = estimate_memory(cfg, data_shape)
    free = available_memory()
    if free is not None and est["total"] > free:
        raise ConfigError(f"this config needs about {_gib(est['total'])} (data {_gib(est['data'])}, model "
                          f"{_gib(est['model'])} for {est['params']:,} parameters, one training step "
                          f"{_gib(est['step'])}) but only {_gib(free)} of memory is available; reduce size, "
                          f"batch_size, n_train or the model's channels/depth")
    return est


def build_run(cfg, progress=True, log=print, data=None, user=None):
    """The Trainer for a training config (validated and completed with :func:`npunet.config.merge`):
    the seed, the data (read, split, normalised once), the model (in_channels and num_classes from
    the data unless the config sets them), the loader with its augmentation, the optimiser and
    schedule, the run folder.  data: (train, val) raw arrays to use instead of the config's data
    source.  user: the user's own config (before merging), to tell chosen values from defaults;
    without it a value that differs from the default counts as chosen."""
    from .. import init, optim
    from ..data import Augment, DataLoader, SegmentationDataset
    from ..data.normalize import describe as describe_norm, mean_std
    from .train import Trainer
    cfg = C.merge({}, cfg)  # re-validates a dict that did not come through merge
    say = log or (lambda *a: None)
    from ..data.files import is_file_source
    early = data is None and (cfg["data"] in ("synthetic", "nuclei") or not is_file_source(cfg["data"]))
    if early:
        check_memory(cfg)  # synthetic or .npz: from shapes alone, before anything is generated or inflated
    init.manual_seed(cfg["seed"])
    if data is None:
        d = load_data(cfg, user, log)
    else:
        d = dict(kind="given", train=data[0], val=data[1], mapping=None, n_val=cfg["n_val"],
                 in_channels=int(np.shape(data[0][0][0])[0]), num_classes=2)
        from ..data.files import is_file_source, load_folder
        if cfg["data"] not in ("synthetic", "nuclei") and is_file_source(cfg["data"]):
            info = load_folder(cfg["data"], log=None)  # the same mapping as the full data set
            d.update(mapping=info["mapping"], kind="files", num_classes=info["num_classes"])
        elif cfg["data"] not in ("synthetic", "nuclei"):
            d.update(kind="npz", num_classes=max(2, max(int(np.max(m)) for m in data[0][1]) + 1))
    train, val = d["train"], d["val"]
    cfg["n_val"] = d["n_val"]
    if d["kind"] in ("files", "npz"):
        _infer_model_config(cfg, user, d["in_channels"], d["num_classes"], log)
    cls = C.check_model_config(cfg)
    if not early:  # folder data or arrays given: their shapes are known now (read, not yet trained on)
        H = max(int(np.shape(im)[-2]) for im in train[0])
        W = max(int(np.shape(im)[-1]) for im in train[0])
        if d["kind"] == "files":
            H, W = min(H, cfg["size"]), min(W, cfg["size"])  # trained on crops of `size`
        n_images = len(train[0]) + (len(val[0]) if val is not None else 0)   # cv's final run has no val
        check_memory(cfg, (n_images, d["in_channels"], H, W, 0))  # the data is in memory already
    init.manual_seed(cfg["seed"])
    model = cls(**cfg["model_config"])
    n_train = len(train[0])
    if _explicit(cfg, user, "batch_size") or d["kind"] in ("synthetic", "nuclei"):
        if cfg["batch_size"] > n_train:
            raise ConfigError(f"config key 'batch_size': {cfg['batch_size']} is more than the {n_train} training "
                              f"images")
    elif cfg["batch_size"] > n_train:
        cfg["batch_size"] = n_train
        say(f"batch_size {n_train}: all {n_train} training images in each step (the default 8 is more than there "
            f"are; set \"batch_size\" to choose)")
    labels = train[2]
    use_wm = cfg["weight_map"]
    loss = make_loss(cfg["loss"])
    if use_wm and not loss.accepts_weight:
        raise ConfigError(f"config keys 'weight_map' and 'loss': the loss {cfg['loss']!r} cannot use a weight map; "
                          f"set \"weight_map\": false or choose 'ce', 'bce' or 'bce_dice'")
    if use_wm and (labels is None or d.get("labels_from") == "components"):
        if labels is None:
            labels = _stack(_components(train[1]))
        say("weight_map: the data has no touching-instance labels, so the instances are the connected components of "
            "each mask's foreground (objects that touch count as one); set \"weight_map\": false to train without it")
    norm = mean_std(train[0]) if d["kind"] in ("files", "npz") else {"kind": "identity"}
    if d["kind"] in ("files", "npz"):
        say(f"normalisation: {describe_norm(norm)} (stored in the checkpoint, applied by predict)")
    model.normalization, model.mask_mapping = norm, d["mapping"]
    ds = SegmentationDataset(train[0], train[1], labels, weight_map=use_wm,
                             num_classes=max(2, cfg["model_config"].get("num_classes", 2)))
    aug = dict(cfg["augment"])
    crop = _train_crop(cfg, model, train[0]) if d["kind"] in ("files", "npz") else None
    if crop is not None and aug.get("crop") is None:
        aug["crop"] = crop
        say(f"training on random {crop}x{crop} crops of the images (config key 'size'); validation on whole images")
    loader = DataLoader(ds, batch_size=cfg["batch_size"], augment=Augment(**aug), seed=cfg["seed"],
                        normalization=norm)
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
    trainer.input_range = input_range(train[0])
    return trainer
