"""Training: a Trainer with progress bar, validation, deep supervision, the weight map, and
checkpoints that resume exactly."""
import copy
import json
import math
import os
import time

import numpy as np

from .. import init, losses, metrics
from ..io import load_npz, save_npz
from ..models.pretrained import normalize_input
from ..models.registry import REGISTRY

FORMAT_VERSION = 1
MODEL_CLASSES = {name: e.cls for name, e in REGISTRY.items()}  # a checkpoint's 'architecture' -> class


def center_crop(a, H, W):
    """Center-crop the last two axes of a to (H, W) (targets of a valid-conv U-Net)."""
    h, w = a.shape[-2:]
    t, l = (h - H) // 2, (w - W) // 2
    return a[..., t:t + H, l:l + W]


def _heads(out):
    if isinstance(out, tuple):      # (seg, cls) from a CGM model in training
        out = out[0]
    return out if isinstance(out, list) else [out]


class Trainer:
    """Runs epochs of (forward, loss, backward, optimiser step) with a tqdm progress bar.

    model: an npunet model; loss: a Loss taking (logits, target[, weight]) (wrapped in
    DeepSupervisionLoss automatically when the model returns several heads).
    Targets come from the loader's masks, in the form the loss declares (``loss.target``): int
    (N, H, W) for "class", float (N, 1, H, W) for "binary"; with use_weight_map the U-Net weight map
    is passed as the loss weight (a loss that cannot use one says so).  For a valid-conv U-Net the
    targets are center-cropped to the output size.  A model with UNet 3+'s classification-guided
    module also trains its classifier: ``cls_loss`` (BCELoss) on "the mask is not empty".
    """

    def __init__(self, model, loss, optimizer, train_loader, scheduler=None, val_data=None, use_weight_map=False,
                 checkpoint_path=None, config=None, progress=True, log=print):
        self.model, self.loss, self.optimizer, self.loader = model, loss, optimizer, train_loader
        self.scheduler, self.val_data, self.use_weight_map = scheduler, val_data, use_weight_map
        self.checkpoint_path, self.config, self.progress, self.log = checkpoint_path, dict(config or {}), progress, log
        self.epoch, self.batch, self.step = 0, 0, 0
        self.history = {"step_loss": [], "epoch": [], "train_loss": [], "val_loss": [], "val_dice": [], "val_iou": [],
                        "val_instance_f1": [], "lr": [], "seconds": []}
        if self._plateau() and val_data is None:
            raise ValueError("Trainer: ReduceLROnPlateau reads the validation loss; give val_data")
        if use_weight_map and not loss.accepts_weight:
            raise ValueError(f"Trainer: use_weight_map=True but {type(loss).__name__} cannot use a weight map")
        self._ds_loss = losses.DeepSupervisionLoss(loss)
        self.cls_loss = losses.BCELoss()
        self.input_range = None  # the training images' typical [min, max]; predict maps files onto it

    def _plateau(self):
        from ..optim import ReduceLROnPlateau
        return isinstance(self.scheduler, ReduceLROnPlateau)

    def val_loss(self, images, masks):
        """The training loss (without the weight map) on the validation images' full-size logits,
        computed under no_grad."""
        from ..data.tiling import predict_images
        logits = np.stack(predict_images(self.model, images)).astype(self.model.dtype)
        mask = np.asarray(masks)
        target = mask if self.loss.target == "class" else mask[:, None].astype(self.model.dtype)
        return float(self.loss.forward(logits, target))

    # ------------------------------------------------------------ one step
    def _targets(self, batch, out_shape):
        H, W = out_shape[-2:]
        mask = center_crop(batch["mask"], H, W)
        weight = center_crop(batch["weight"], H, W) if self.use_weight_map else None
        if self.loss.target == "class":
            return mask, weight
        return mask[:, None].astype(self.model.dtype), weight

    def train_step(self, batch):
        """One optimisation step on a batch; returns the loss value.  A NaN/Inf anywhere (loss or
        activations) stops training with the step named; nothing is saved, so the last checkpoint stays good."""
        from ..backends import step_threads
        try:
            with np.errstate(over="ignore", invalid="ignore"), step_threads():
                return self._train_step(batch)
        except FloatingPointError as e:
            raise self._diverged("training", e) from None

    def _diverged(self, where, e):
        last = f"; the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path and \
            os.path.exists(self.checkpoint_path) else ""
        return FloatingPointError(f"Trainer: training diverged at step {self.step} (epoch {self.epoch + 1}, batch "
                                  f"{self.batch}), first seen in {where}: {e}; stopping without saving{last}. "
                                  f"Lower the learning rate (now {self.optimizer.lr:g}).")

    def _train_step(self, batch):
        m = self.model
        x = normalize_input(m, batch["image"].astype(m.dtype))  # ImageNet mean/std of a pretrained encoder
        out = m(x)
        heads = _heads(out)
        target, weight = self._targets(batch, heads[0].shape)
        value = self._ds_loss.forward(heads, target, weight)
        if not math.isfinite(value):  # train_step adds the step and the checkpoint to the message
            raise FloatingPointError(f"the loss became {value}")
        grads = self._ds_loss.backward()
        d = grads if isinstance(_strip_cls(out), list) else grads[0]
        if isinstance(out, tuple):  # CGM: (seg, cls) with cls (N, 2) = P(absent), P(present)
            cls = out[1]
            present = (batch["mask"].reshape(len(cls), -1).max(axis=1) > 0).astype(cls.dtype)
            value += self.cls_loss.forward(cls, np.stack([1 - present, present], axis=1))
            d = (d, self.cls_loss.backward())
        m.zero_grad()
        m.backward(d)
        self.optimizer.step()
        self.step += 1
        return value

    # ------------------------------------------------------------ loops
    def fit(self, epochs, max_steps=None, checkpoint_every=None):
        """Train until ``epochs`` epochs (or ``max_steps`` total steps) are done; resumes from
        self.epoch/self.batch.  Checkpoints after every epoch (and every ``checkpoint_every`` steps)."""
        from tqdm.auto import tqdm
        self.model.train()
        while self.epoch < epochs:
            t0 = time.perf_counter()
            bar = tqdm(total=len(self.loader), initial=self.batch, desc=f"epoch {self.epoch + 1}/{epochs}",
                       disable=not self.progress, leave=False, dynamic_ncols=True)
            vals = []
            for batch in self.loader.iterate(self.epoch, self.batch):
                v = self.train_step(batch)
                vals.append(v)
                self.history["step_loss"].append(v)
                self.batch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{v:.4f}", img_s=f"{batch['image'].shape[0] * bar.n / max(time.perf_counter() - t0, 1e-9):.1f}")
                if checkpoint_every and self.step % checkpoint_every == 0 and self.checkpoint_path:
                    self.save(self.checkpoint_path)
                if max_steps is not None and self.step >= max_steps:
                    bar.close()
                    return self.history
            bar.close()
            self._end_epoch(vals, time.perf_counter() - t0)
        return self.history

    def _end_epoch(self, vals, seconds):
        h = self.history
        h["epoch"].append(self.epoch + 1)
        h["train_loss"].append(float(np.mean(vals)) if vals else float("nan"))
        h["lr"].append(self.optimizer.lr)
        h["seconds"].append(seconds)
        msg = f"epoch {self.epoch + 1}: loss {h['train_loss'][-1]:.4f}"
        if self.val_data is not None:
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    r = evaluate(self.model, *self.val_data)
            except FloatingPointError as e:
                raise self._diverged("validation", e) from None
            if self._plateau():
                h.setdefault("val_loss", []).append(self.val_loss(*self.val_data[:2]))
                msg += f", val loss {h['val_loss'][-1]:.4f}"
            h["val_dice"].append(r["dice"])
            h["val_iou"].append(r["iou"])
            h["val_instance_f1"].append(r.get("instance_f1", float("nan")))
            msg += ", " + format_scores(r)
        if self._plateau():
            self.scheduler.step(h["val_loss"][-1])
        elif self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        self.batch = 0
        if self.log:
            self.log(msg + f" ({seconds:.1f} s)")
        if self.checkpoint_path:
            self.save(self.checkpoint_path)

    # ------------------------------------------------------------ checkpoints
    def save(self, path):
        """Atomic checkpoint: parameters, BN buffers, optimiser state, schedule, epoch/step, RNG states,
        history, config, format version.  A crash mid-save leaves the previous file intact."""
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        opt_state, opt_meta = _split_optimizer_state(self.optimizer.state_dict())
        arrays.update(opt_state)
        rngs = {n: m._rng.bit_generator.state for n, m in self.model.named_modules() if hasattr(m, "_rng")}
        meta = dict(format_version=FORMAT_VERSION, architecture=type(self.model).__name__,
                    model_config=_jsonable(self.model.config), dtype=str(self.model.dtype),
                    epoch=self.epoch, batch=self.batch, step=self.step,
                    optimizer=dict(type=type(self.optimizer).__name__, **opt_meta),
                    scheduler=None if self.scheduler is None else self.scheduler.state_dict(),
                    rng=dict(init=init.rng().bit_generator.state, modules=rngs, loader_seed=self.loader.seed),
                    history=self.history, config=_jsonable(self.config), input_range=self.input_range,
                    normalization=getattr(self.model, "normalization", None),
                    mask_mapping=getattr(self.model, "mask_mapping", None),
                    input_norm=getattr(self.model, "input_norm", None))
        arrays["meta"] = np.array(json.dumps(meta))
        save_npz(path, arrays)

    def load(self, path):
        """Restore everything saved by :meth:`save` into this trainer (same architecture)."""
        data, meta = read_checkpoint(path)
        fresh_lrs = [g["lr"] for g in self.optimizer.param_groups]          # this run's schedule at step 0
        fresh_schedule = None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict())
        arch, cfg = meta["architecture"], meta["model_config"]
        if arch != type(self.model).__name__ or _jsonable(self.model.config) != cfg:
            raise ValueError(f"checkpoint '{path}' holds a {arch} with {cfg}; this trainer's model is a "
                             f"{type(self.model).__name__} with {_jsonable(self.model.config)}")
        self.model.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("model/")})
        _load_optimizer_state(self.optimizer, data, meta["optimizer"])
        if self.scheduler is not None and meta["scheduler"] is not None and self._plateau():
            # the plateau schedule's progress (driven by validation losses), not its settings
            keep = ("last_epoch", "_step_count", "_last_lr", "best", "num_bad_epochs", "cooldown_counter")
            self.scheduler.load_state_dict({k: v for k, v in meta["scheduler"].items() if k in keep})
        elif self.scheduler is not None and meta["scheduler"] is not None:
            # replay this run's schedule (its settings may extend the saved one: more epochs, a longer
            # cosine) for the saved number of epochs, so that the lr equals a straight run's bit for bit
            self.scheduler.load_state_dict(fresh_schedule)
            for g, lr in zip(self.optimizer.param_groups, fresh_lrs):
                g["lr"] = lr
            for _ in range(int(meta["scheduler"]["last_epoch"])):
                self.scheduler.step()
        init.rng().bit_generator.state = meta["rng"]["init"]
        for n, m in self.model.named_modules():
            if hasattr(m, "_rng") and n in meta["rng"]["modules"]:
                m._rng.bit_generator.state = meta["rng"]["modules"][n]
        self.epoch, self.batch, self.step = meta["epoch"], meta["batch"], meta["step"]
        self.history = meta["history"]
        self.config = meta["config"]
        self.input_range = meta.get("input_range")
        if "normalization" in meta:
            self.model.normalization, self.model.mask_mapping = meta["normalization"], meta.get("mask_mapping")
            if self.loader is not None and hasattr(self.loader, "normalization"):
                self.loader.normalization = meta["normalization"]
        if meta.get("input_norm"):
            self.model.input_norm = meta["input_norm"]
        return self


def _split_optimizer_state(sd):
    """optimizer.state_dict() -> (arrays 'optim/state/<index>/<name>', JSON part: param_groups and the
    numbers of 'state')."""
    arrays, numbers = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                arrays[f"optim/state/{i}/{k}"] = v
            else:
                numbers.setdefault(str(i), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return arrays, dict(lr=groups[0]["lr"], param_groups=groups, state_numbers=numbers)


def _load_optimizer_state(opt, data, meta):
    """Rebuild the optimiser's state_dict from a checkpoint; checkpoints of npunet < 0.2 (arrays
    'optim/<slot>/<index>', meta lr/base_lr/t) still load."""
    if "param_groups" not in meta:
        opt.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("optim/")}, meta)
        return
    state = {int(i): dict(v) for i, v in meta.get("state_numbers", {}).items()}
    for k, v in data.items():
        if k.startswith("optim/state/"):
            i, name = k[len("optim/state/"):].split("/", 1)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def read_meta(data, path):
    """The checkpoint's metadata, validated: a dict with the format version, a known architecture, a
    complete model_config that the model's constructor and the config schema's limits accept, a
    float32/float64 dtype, a finite input_range [lo, hi] (or null) and a valid training config.
    Anything else raises ValueError (one line naming the file and the key)."""
    from . import config as C
    from ..io import InputError, loads_json
    if "meta" not in data:
        raise ValueError(f"'{path}' is not an npunet checkpoint (no 'meta' entry); a plain state_dict "
                         f"file loads with model.load(path)")
    bad = f"checkpoint '{path}': metadata"
    raw = data["meta"]
    if not isinstance(raw, np.ndarray) or raw.dtype.kind != "U" or raw.shape != ():
        raise ValueError(f"{bad}: expected one JSON string, got a {getattr(raw, 'dtype', type(raw))} array")
    try:
        meta = loads_json(str(raw), bad)
    except InputError as e:
        raise ValueError(str(e)) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{bad}: expected a JSON object, got {C._type_name(meta)}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint '{path}' has format version {meta.get('format_version')}, "
                         f"this npunet reads version {FORMAT_VERSION}")
    arch = meta.get("architecture")
    if arch not in MODEL_CLASSES:
        raise ValueError(f"{bad} 'architecture': expected one of {', '.join(MODEL_CLASSES)}, got {arch!r}")
    mc = meta.get("model_config")
    if not isinstance(mc, dict):
        raise ValueError(f"{bad} 'model_config': expected an object, got {C._type_name(mc)}")
    import inspect
    params = [p for p in inspect.signature(MODEL_CLASSES[arch].__init__).parameters if p != "self"]
    extra = [k for k in mc if k not in params]
    if extra:
        raise ValueError(f"{bad} 'model_config': unknown {arch} argument(s) {', '.join(map(repr, extra))}; "
                         f"known: {', '.join(params)}")
    aliases = ("classes", "encoder_weights", "activation")  # SMP's spellings: accepted, never saved
    missing = [k for k in params if k not in mc and k not in aliases]
    if missing:
        raise ValueError(f"{bad} 'model_config': missing {arch} argument(s) {', '.join(map(repr, missing))} "
                         f"(npunet saves every argument)")
    try:
        C.check_model_config({"model": arch, "model_config": mc})
    except C.ConfigError as e:
        raise ValueError(f"{bad}: {e}") from None
    if meta.get("dtype") not in ("float32", "float64"):
        raise ValueError(f"{bad} 'dtype': expected 'float32' or 'float64', got {meta.get('dtype')!r}")
    ir = meta.get("input_range")
    if ir is not None and not (isinstance(ir, list) and len(ir) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in ir) and ir[0] < ir[1]):
        raise ValueError(f"{bad} 'input_range': expected [low, high] with finite numbers low < high, got "
                         f"{json.dumps(ir)}")
    if meta.get("config") is not None:
        if not isinstance(meta["config"], dict):
            raise ValueError(f"{bad} 'config': expected an object, got {C._type_name(meta['config'])}")
        try:
            C.merge(meta["config"], check_data=False)
        except C.ConfigError as e:
            raise ValueError(f"{bad} 'config': {e}") from None
    return meta


def read_checkpoint(path):
    """(arrays, validated meta) of a training checkpoint; every problem is a ValueError naming the file."""
    from ..io import check_input_file
    check_input_file(path, "checkpoint")
    data = load_npz(path, "an npunet checkpoint (.npz)")
    return data, read_meta(data, path)


def load_model(path):
    """Rebuild the model stored in a checkpoint (architecture, config, dtype, weights).  The metadata is
    validated first (:func:`read_meta`) and the model's memory estimated from shapes before it is built:
    a hostile or broken checkpoint is refused with one line naming the file and the key."""
    from .. import init
    from ..io import _gib, available_memory
    data, meta = read_checkpoint(path)
    cls = MODEL_CLASSES[meta["architecture"]]
    cfg = dict(meta["model_config"])
    for k in ("filters", "decoder_channels"):
        if isinstance(cfg.get(k), list):
            cfg[k] = tuple(cfg[k])
    try:
        with init.shapes_only():
            n = cls(**cfg).num_parameters()
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint '{path}': metadata 'model_config': {e}") from None
    free = available_memory()
    need = n * np.dtype(meta["dtype"]).itemsize * 2
    if free is not None and need > free:
        raise ValueError(f"checkpoint '{path}': its {meta['architecture']} has {n:,} parameters ({_gib(need)}), "
                         f"more than the {_gib(free)} of memory available")
    m = cls(**cfg).to(np.dtype(meta["dtype"]))
    try:
        m.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("model/")})
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint '{path}': {str(e).strip(chr(34) + chr(39))}") from None
    m.normalization, m.mask_mapping = meta.get("normalization"), meta.get("mask_mapping")
    if meta.get("input_norm"):
        m.input_norm = meta["input_norm"]
    return m, meta


def _jsonable(d):
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _strip_cls(out):
    return out[0] if isinstance(out, tuple) else out


def predict_masks(model, images, threshold=0.5):
    """Class masks (N, H, W) uint8 for raw images (N, C, H, W) (or a list of (C, H, W) of any sizes:
    then a list): sigmoid > threshold for 1 class, argmax otherwise.  The model's recorded input
    normalisation (``model.normalization``, set by training and by load_model) is applied first.
    Valid-conv U-Nets use overlap-tile, same-padded models pad and crop (and tile large images)."""
    from ..data.tiling import predict_images
    from ..data.normalize import normalize
    norm = getattr(model, "normalization", None)
    batch = 8
    if norm is not None:
        images = [normalize(im, norm) for im in images]
        # data from files: one image per pass, as ``npunet predict`` does, so predicting the files
        # reproduces the validation scores bit for bit
        batch = 8 if norm.get("kind") == "identity" else 1
    out = []
    for y in predict_images(model, images, batch=batch):
        if y.shape[0] == 1:
            cgm_probs = getattr(model, "cgm", False)  # UNet3+ with CGM returns probabilities in eval
            out.append((y[0] > (threshold if cgm_probs else np.log(threshold / (1 - threshold)))).astype(np.uint8))
        else:
            out.append(np.argmax(y, axis=0).astype(np.uint8))
    return np.stack(out) if len({o.shape for o in out}) == 1 else out


def evaluate(model, images, masks, labels=None):
    """Scores on raw images (N, C, H, W) (or lists of different sizes) against masks (N, H, W).
    Binary: the foreground's Dice, IoU, precision, recall, F1, accuracy and, with instance labels,
    instance F1 at IoU >= 0.5.  K > 2 classes: the mean over the classes of Dice and IoU (and
    dice_per_class, iou_per_class lists)."""
    pred = predict_masks(model, images)
    K = max(2, getattr(model, "num_classes", 2))
    meter = metrics.SegmentationMeter(K)
    for i in range(len(pred)):
        meter.update(pred[i][None], np.asarray(masks[i])[None],
                     true_instances=None if labels is None or K > 2 else np.asarray(labels[i])[None])
    r = meter.compute()
    if K > 2:
        s = metrics.scores(meter.counts)
        r["dice_per_class"] = [float(v) for v in s["dice_per_class"]]
        r["iou_per_class"] = [float(v) for v in s["iou_per_class"]]
        r["iou"] = s["iou"]
    return r


def format_scores(r):
    """'val Dice 0.912, IoU 0.84, instance F1 0.80' (instance F1 only when it exists; per class for K > 2)."""
    if "dice_per_class" in r:
        return (f"val mean Dice {r['dice']:.3f} (per class " + "/".join(f"{v:.2f}" for v in r["dice_per_class"])
                + f"), mean IoU {r['iou']:.3f} (per class " + "/".join(f"{v:.2f}" for v in r["iou_per_class"]) + ")")
    msg = f"val Dice {r['dice']:.3f}, IoU {r['iou']:.3f}"
    if "instance_f1" in r:
        msg += f", instance F1 {r['instance_f1']:.3f}"
    return msg
