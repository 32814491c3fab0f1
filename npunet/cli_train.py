"""CLI commands that need the models and data: demo, train, predict, summary."""
import json
import os
import sys

import numpy as np

from .runs import build_run

def _cmd_demo(args):
    from .config import ConfigError
    from .demo import run_demo
    from .io import InputError
    for flag, v in (("--epochs", args.epochs), ("--n-train", args.n_train)):
        if v < 1:  # checked before anything runs: no figure, no checkpoint, nothing reported
            _fail(f"npunet demo: {flag} must be >= 1, got {v}")
    if args.seed < 0:
        _fail(f"npunet demo: --seed must be >= 0, got {args.seed}")
    try:
        r = run_demo(model=args.model, data=args.data, epochs=args.epochs, seed=args.seed, out=args.out,
                     weight_map=not args.no_weight_map, n_train=args.n_train, progress=not args.quiet)
    except (ConfigError, InputError, OSError) as e:
        _fail(f"npunet demo: {e}")
    m = r["metrics"]
    ok = m["dice"] >= 0.9 and m.get("instance_f1", 0) >= 0.8
    print(f"demo {'reached' if ok else 'did not reach'} the classroom targets (Dice >= 0.90, instance F1 >= 0.80) "
          f"in {r['seconds']:.0f} s")


def _fail(msg):
    raise SystemExit(msg)


def _read_config(path, cmd="train"):
    from .io import InputError, read_json
    try:
        return read_json(path, "config")
    except InputError as e:
        _fail(f"npunet {cmd}: {e}")


def _config_diffs(saved, mine):
    """'key (checkpoint X, config Y)' for every key the two configs disagree on (nested keys dotted)."""
    out = []
    for k in mine:
        a, b = saved.get(k), mine[k]
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in _config_diffs(a, b)]
        elif json.dumps(a) != json.dumps(b):
            out.append(f"{k} (checkpoint {json.dumps(a)}, config {json.dumps(b)})")
    return out


def _cmd_train(args):
    from .config import ConfigError, describe, merge
    from .io import InputError, check_out_path, lock_folder, unlock_folder
    from .train import read_checkpoint
    if args.help_config:
        print(describe())
        return
    if args.resume and args.force:
        _fail("npunet train: --resume continues the run in the folder and --force starts it over; give one")
    user = _read_config(args.config) if args.config else {}
    if isinstance(user, dict):
        user = dict(user)
        if args.data:
            user["data"] = args.data
        if args.out:
            user["out"] = args.out
        if args.epochs is not None:
            user["epochs"] = args.epochs
    try:
        cfg = merge(user)
        check_out_path(cfg["out"], "folder")
        # one process per run folder: taken before the folder is read, held until this process exits
        lock_folder(cfg["out"], log=lambda m: print(f"npunet train: {m}", file=sys.stderr))
    except (ConfigError, InputError) as e:
        _fail(f"npunet train: {e}")

    def _refuse(msg):  # a refused run leaves no trace of itself in the folder
        unlock_folder(cfg["out"], cleanup=True)
        raise SystemExit(msg)

    ck = os.path.join(cfg["out"], "checkpoint.npz")
    resume = args.resume and os.path.lexists(ck)
    try:
        if resume:
            try:
                _, meta = read_checkpoint(ck)
            except (OSError, ValueError) as e:
                _refuse(f"npunet train --resume: {e}")
            saved = merge(meta["config"])
            mine = merge({k: v for k, v in user.items() if k not in ("out", "epochs")}, base=saved)
            diffs = _config_diffs(saved, mine)
            if diffs:
                print(f"npunet train --resume: the config differs from the checkpoint's in {'; '.join(diffs)}. "
                      f"The run continues with the checkpoint's values, so that it resumes exactly; to train with "
                      f"the new values start over with --force.", file=sys.stderr)
            cfg = dict(saved, out=cfg["out"], epochs=cfg["epochs"])
        elif os.path.lexists(ck) and not args.force:
            _refuse(f"npunet train: '{cfg['out']}' already holds a run ({ck}); continue it with --resume, or start "
                  f"over with --force (the checkpoint is replaced), or choose another folder with --out")
        elif args.resume:
            print(f"npunet train --resume: no checkpoint in '{cfg['out']}' yet; starting a new run", file=sys.stderr)
        trainer = build_run(cfg, user=None if resume else user)
    except (ConfigError, InputError) as e:
        _refuse(f"npunet train: {e}")
    except (TypeError, ValueError) as e:  # a model constructor's own check of model_config
        _refuse(f"npunet train: config key 'model_config': {e}")
    try:
        if resume:
            trainer.load(ck)
            print(f"resumed from {ck} at epoch {trainer.epoch}, step {trainer.step}")
        elif args.force and os.path.exists(ck):
            os.remove(ck)  # starting over: the old run must not be resumed by mistake later
    except (OSError, ValueError) as e:
        _refuse(f"npunet train: {e}")
    try:
        trainer.fit(cfg["epochs"])
    except OSError as e:  # a full disk: the last checkpoint is intact, --resume continues from it
        _refuse(f"npunet train: {e}; continue later with --resume")
    print(f"done: checkpoint {ck}")


def fit_range(a, lo, hi):
    """Map the image's own [min, max] onto [lo, hi], the training images' typical range: the same
    picture gives the same input whatever the file's scale (0..255 PNG, 0..1 float .npy)."""
    a = np.asarray(a, np.float64)
    amin, amax = float(a.min()), float(a.max())
    scale = max(abs(amin), abs(amax), 1e-300)
    if not np.isfinite(amax - amin):  # values near the float64 limit (±1.7e308): scale before subtracting
        a, amin, amax = a / scale, amin / scale, amax / scale
    span = amax - amin
    return lo + (a - amin) * ((hi - lo) / span) if span > 0 else np.full_like(a, lo)


def check_predict_paths(inp, out, exts=(".png",)):
    """The path checks of ``npunet predict`` before any work: ``out`` must be a writable file path with a
    known extension in an existing folder, and never the input itself.  Raises InputError."""
    from .io import InputError, check_input_file, check_out_path
    check_input_file(inp, "input")
    if os.path.abspath(out) == os.path.abspath(inp) or (os.path.exists(out) and os.path.samefile(out, inp)):
        raise InputError(f"--out '{out}' is the input image; the mask would replace it. Choose another --out")
    check_out_path(out, "file", exts=exts)


def _cmd_predict(args):
    from .data.files import DataError
    from .data.inference import expand_inputs, predict_files
    from .io import InputError, check_out_path
    from .train import load_model
    try:
        check_out_path(args.out, "folder")  # before the checkpoint is read or anything is predicted
    except InputError as e:
        _fail(f"npunet predict: {e}")
    try:
        model, meta = load_model(args.checkpoint)
    except (OSError, ValueError) as e:
        _fail(f"npunet predict: {e}")
    fallback = None
    if meta.get("normalization") is None and meta.get("input_range"):
        fallback = meta["input_range"]  # a checkpoint from before normalisation records: the old min-max rule
    try:
        files = expand_inputs(args.input)
        predict_files(model, files, args.out, overlay_=args.overlay, probabilities=args.probabilities,
                      force=args.force, progress=not args.quiet, fallback_range=fallback)
    except (DataError, ValueError) as e:
        _fail(f"npunet predict: {e}")


def _cmd_summary(args):
    from . import init, models
    from .models.summary import summary
    for name in ("size", "base", "depth"):
        v = getattr(args, name)
        if v is not None and v < 1:
            _fail(f"npunet summary: --{name} must be >= 1, got {v}")
    if args.in_channels < 1 or args.classes < 1:
        _fail(f"npunet summary: --in-channels and --classes must be >= 1, got {args.in_channels} and {args.classes}")
    try:
        with init.shapes_only():  # shapes only, as documented: no weight is allocated, whatever the size
            if args.model == "unet":
                m = models.UNet(args.in_channels, args.classes, 64 if args.base is None else args.base,
                                depth=4 if args.depth is None else args.depth, padding="same" if args.same else "valid")
            elif args.model == "unetpp":
                base, depth = args.base or 32, args.depth or 4
                m = models.UNetPlusPlus(args.in_channels, args.classes, filters=[base * 2 ** i for i in range(depth + 1)],
                                        depth=depth, deep_supervision=True)
            else:
                if args.depth not in (None, 4):
                    _fail(f"npunet summary: UNet 3+ has five levels (depth 4), got --depth {args.depth}")
                base = args.base or 64
                m = models.UNet3Plus(args.in_channels, args.classes, filters=[base * 2 ** i for i in range(5)],
                                     cat_channels=base, deep_supervision=True, cgm=True)
        size = args.size or (572 if args.model == "unet" and not args.same else 256)
        summary(m, (1, args.in_channels, size, size))
    except (TypeError, ValueError, OverflowError) as e:
        _fail(f"npunet summary: {e}")


def _cmd_cv(args):
    from .config import ConfigError
    from .cv import cross_validate, format_table, parse_grid
    user = _read_config(args.config, "cv") if args.config else {}
    try:
        if isinstance(user, dict):
            user = dict(user, out=args.out)
            if args.epochs is not None:
                user["epochs"] = args.epochs
        grid = parse_grid(args.grid) if args.grid else None
        r = cross_validate(user, folds=args.folds, grid=grid, select=args.select, test_fraction=args.test_fraction,
                           progress=not args.quiet)
    except ConfigError as e:
        _fail(f"npunet cv: {e}")
    except (TypeError, ValueError, OSError) as e:
        _fail(f"npunet cv: {e}")
    print()
    print(format_table(r))
    print(f"\nbest (by mean validation {r['select']}): setting {r['best']['index']} {json.dumps(r['best']['setting'])}")
    shown = ("dice", "iou", "precision", "recall", "f1", "accuracy", "instance_f1")
    print("test set, evaluated once: " + ", ".join(f"{k} {v:.3f}" for k, v in r["test"].items() if k in shown)
          + f" (the final model of setting {r['test_setting']['index']} {json.dumps(r['test_setting']['setting'])})")
    print(f"outputs in {args.out}: cv_results.csv, cv_curves.png, cv_dice.png, test_predictions.png, "
          f"final/checkpoint.npz, cv_split in cv_plan.json")


def add_commands(sub):
    d = sub.add_parser("demo", help="the classroom demo: train a small U-Net on touching cells in ~2 minutes")
    d.add_argument("--model", choices=["unet", "unetpp", "unet3plus", "resnet18", "resnet34", "mobilenet_v2",
                                       "efficientnet-b0"], default="unet",
                   help="U-Net, U-Net++, UNet 3+, or a U-Net with a ResNet / MobileNetV2 / EfficientNet encoder")
    d.add_argument("--data", choices=["synthetic", "nuclei"], default="synthetic",
                   help="synthetic touching cells (default) or the DSB 2018 nuclei image shipped with npunet")
    d.add_argument("--epochs", type=int, default=20)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--n-train", type=int, default=48, help="synthetic training images")
    d.add_argument("--out", default="npunet_demo_out", help="folder for figures and the checkpoint")
    d.add_argument("--no-weight-map", action="store_true", help="train without the U-Net border weight map")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)
    t = sub.add_parser("train", help="train on your images (--data) or the built-in data, from an optional JSON config",
                       description="Train a U-Net on a data folder with no config file: npunet train --data DIR --out "
                       "RUN.  in_channels, num_classes, the mask value/colour -> class mapping and the input "
                       "normalisation are taken from the data and stored in RUN/checkpoint.npz; then "
                       "npunet predict --checkpoint RUN/checkpoint.npz --input IMAGES --out PRED.  Every config key, "
                       "its type, range and default: npunet train --help-config.")
    t.add_argument("--data", metavar="PATH",
                   help="a folder with images/ and masks/ (or image/ and label/) paired by file stem (a.png <-> "
                        "a.png or a_mask.png; .png .tif .tiff .jpg .jpeg .bmp .npy); two TIFF stacks "
                        "images.tif:masks.tif (or a folder holding one such pair); an .npz with images (N, C, H, W) "
                        "and masks (N, H, W); 'synthetic' or 'nuclei'.  Overrides the config's \"data\"")
    t.add_argument("--config", help="JSON file overriding the defaults (keys: npunet train --help-config)")
    t.add_argument("--out", help="run folder (checkpoint.npz is written there after every epoch)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.add_argument("--force", action="store_true", help="start over in a folder that already holds a run")
    t.add_argument("--help-config", action="store_true", help="print every config key with its type, range and default")
    t.set_defaults(func=_cmd_train)
    c = sub.add_parser("cv", help="K-fold cross-validation and a grid search; the best setting is retrained "
                                  "and evaluated once on a held-out test set")
    c.add_argument("--config", help="JSON training config (see npunet train --help-config)")
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values (repeatable); nested keys as model_config.base_channels "
                        "or just base_channels")
    c.add_argument("--select", default="dice", help="validation metric that picks the best setting "
                                                    "(dice, iou, precision, recall, f1, accuracy, instance_f1)")
    c.add_argument("--test-fraction", type=float, default=0.2, help="share of the data split off as the test set")
    c.add_argument("--epochs", type=int, help="override the config's epochs")
    c.add_argument("--out", default="npunet_cv", help="run folder (an interrupted search resumes there)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=_cmd_cv)
    p = sub.add_parser("predict", help="segment images, folders or globs with a trained checkpoint",
                       description="Writes OUT/<stem>.png for every input: the mask at the input's size, in the "
                       "training masks' values (binary: 0/255).  The checkpoint's normalisation is applied; large "
                       "images and valid-padding models are predicted tile by tile.")
    p.add_argument("--checkpoint", required=True, help="a run's checkpoint.npz")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="image files (.png .tif .tiff .jpg .jpeg .bmp .npy), folders of them, or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks (created if missing)")
    p.add_argument("--overlay", action="store_true", help="also <stem>_overlay.png: the image with the mask outlined")
    p.add_argument("--probabilities", action="store_true", help="also <stem>.npy: float32 (K, H, W) probabilities")
    p.add_argument("--force", action="store_true", help="replace outputs that already exist in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
    s = sub.add_parser("summary", help="print a model's block table and shape trace (no computation)")
    s.add_argument("--model", choices=["unet", "unetpp", "unet3plus"], default="unet")
    s.add_argument("--size", type=int, help="input side (default 572 for unet, 256 otherwise)")
    s.add_argument("--in-channels", type=int, default=1)
    s.add_argument("--classes", type=int, default=2)
    s.add_argument("--base", type=int, help="channels of the first level (default: the model's own)")
    s.add_argument("--depth", type=int, help="levels below the first (default 4)")
    s.add_argument("--same", action="store_true", help="padded convolutions (default: valid, as the paper)")
    s.set_defaults(func=_cmd_summary)
