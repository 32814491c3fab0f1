"""``npunet train``: a training run from a config and/or a data folder, with --resume and --force."""
import json
import os
import sys

from .cli import fail as _fail, read_config as _read_config


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


def run(args):
    from .config import ConfigError, describe, merge
    from ..io import InputError, check_out_path, lock_folder, unlock_folder
    from .runs import build_run
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


def add_command(sub):
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
    t.set_defaults(func=run)
