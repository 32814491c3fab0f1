"""``npunet cv``: K-fold cross-validation and a grid search (the search itself: :mod:`npunet.app.cv`)."""
import json

from .cli import fail as _fail, read_config as _read_config


def run(args):
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


def add_command(sub):
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
    c.set_defaults(func=run)
