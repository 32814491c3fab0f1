"""K-fold cross-validation and a small grid search on npunet's own models, the classical workflow:

1. split off a test set first (seeded, stratified by foreground fraction); the search never sees it;
2. for every setting of the grid, train on K - 1 folds and validate on the held-out fold;
3. report mean +- std of Dice, IoU, precision, recall, F1 and instance F1 across the folds;
4. pick the best setting by a validation metric (mean Dice by default), retrain it on all the
   training data, and evaluate it once on the test set.

``cross_validate(config, folds=5, grid={"lr": [1e-3, 3e-3], "model_config.base_channels": [8, 16]})``
from Python, ``npunet cv --config cfg.json --folds 5 --grid lr=1e-3,3e-3 --grid base_channels=8,16``
from the command line.  Every fold trains through the same code as ``npunet train``, with its
checkpoint in the run folder: an interrupted search resumes where it stopped (finished folds are
not trained again; an unfinished fold continues from its last epoch checkpoint).
"""
import csv
import io
import itertools
import json
import os
import time

import numpy as np

from . import config as C
from .config import ConfigError
from ..io import atomic_write

METRICS = ("dice", "iou", "precision", "recall", "f1", "accuracy", "instance_f1")


# ---------------------------------------------------------------- the grid

def _grid_key(key, base):
    """'lr' -> ('lr',); 'model_config.base_channels' -> ('model_config', 'base_channels'); a bare nested
    name ('base_channels', 'elastic_p') is found in model_config or augment when it is unambiguous."""
    parts = tuple(key.split("."))
    if len(parts) == 1 and parts[0] not in C.SCHEMA:
        homes = [h for h in ("model_config", "augment") if parts[0] in _nested_keys(h, base)]
        if len(homes) == 1:
            return (homes[0], parts[0])
    if parts[0] not in C.SCHEMA or (len(parts) == 2 and parts[0] not in ("model_config", "augment")) or len(parts) > 2:
        raise ConfigError(f"grid key {key!r} is not a config key; use a top-level key ({', '.join(C.SCHEMA)}) or "
                          f"model_config.<argument> / augment.<key>")
    if parts[0] in ("model_config", "augment") and len(parts) == 1:
        raise ConfigError(f"grid key {key!r}: search over one of its entries, e.g. {parts[0]}."
                          f"{sorted(_nested_keys(parts[0], base))[0]}")
    if len(parts) == 2 and parts[1] not in _nested_keys(parts[0], base):
        raise ConfigError(f"grid key {key!r}: {parts[1]!r} is not a key of {parts[0]} "
                          f"({', '.join(sorted(_nested_keys(parts[0], base)))})")
    if parts[0] in ("out", "data", "seed"):
        raise ConfigError(f"grid key {key!r}: the search cannot vary the run folder, the data or the seed")
    return parts


def _nested_keys(home, base):
    if home == "augment":
        return set(C.AUGMENT)
    import inspect
    from .. import models
    cls = getattr(models, base["model"])
    return {p for p in inspect.signature(cls.__init__).parameters if p != "self"}


def parse_value(text):
    """A command-line grid value: JSON where it parses (1e-3, 16, true, [8, 16]), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_grid(items):
    """['lr=1e-3,3e-3', 'base_channels=8,16'] -> {'lr': [0.001, 0.003], 'base_channels': [8, 16]}."""
    grid, given = {}, {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--grid {item!r}: expected key=value1,value2,...")
        if key.strip() in given:  # merging would mislabel the settings: the user says which values
            raise ConfigError(f"--grid {given[key.strip()]!r} and --grid {item!r} name the same key; give its "
                              f"values once: --grid {key.strip()}=v1,v2,...")
        given[key.strip()] = item
        vals = [v for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"--grid {item!r}: no values for {key!r}")
        grid[key.strip()] = [parse_value(v.strip()) for v in vals]
    return grid


def settings(config, grid):
    """Every combination of the grid applied to the (validated) config: a list of (label dict, config)."""
    if grid is None:
        return [({}, config)]
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("the grid is empty: give at least one key with values (or grid=None to cross-validate "
                          "the config as it is)")
    paths = {}
    for key, values in grid.items():
        paths[key] = _grid_key(key, config)
        twin = [k for k in paths if k != key and paths[k] == paths[key]]
        if twin:
            raise ConfigError(f"grid keys {twin[0]!r} and {key!r} name the same config key "
                              f"({'.'.join(paths[key])}); give its values under one of them")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"grid key {key!r}: expected a non-empty list of values, got {values!r}")
    out = []
    for combo in itertools.product(*grid.values()):
        user = {}
        for (key, path), v in zip(paths.items(), combo):
            if len(path) == 1:
                user[path[0]] = v
            else:
                user.setdefault(path[0], {})[path[1]] = v
        try:
            cfg = C.merge(user, base=config)
            cls = C.check_model_config(cfg)
            from .. import init
            with init.shapes_only():  # the constructor's own checks, without allocating weights
                cls(**cfg["model_config"])
        except (TypeError, ValueError) as e:  # every setting is checked before anything is trained or written
            raise ConfigError(f"grid setting {dict(zip(grid, combo))}: {e}") from None
        out.append((dict(zip(grid, combo)), cfg))
    return out


# ---------------------------------------------------------------- splits

def stratified_split(fg, n_test, seed):
    """n_test indices spread over the range of foreground fractions ``fg``: the samples sorted by fg,
    cut into n_test bins, one drawn from each (seeded)."""
    order = np.argsort(fg, kind="stable")
    rng = np.random.default_rng([seed, 1])
    return np.sort([rng.choice(b) for b in np.array_split(order, n_test)])


def stratified_folds(fg, k, seed):
    """k folds of similar foreground-fraction spread: sorted by fg, each run of k consecutive samples
    dealt to the k folds in a seeded random order.  Returns a list of k index arrays."""
    order = np.argsort(fg, kind="stable")
    rng = np.random.default_rng([seed, 2])
    fold_of = np.empty(len(fg), int)
    for start in range(0, len(order), k):
        chunk = order[start:start + k]
        fold_of[chunk] = rng.permutation(k)[:len(chunk)]
    return [np.flatnonzero(fold_of == i) for i in range(k)]


# ---------------------------------------------------------------- running

def _write_json(path, obj):
    data = json.dumps(obj, indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


def _read_json(path, what):
    from ..io import InputError, read_json
    try:
        return read_json(path, what)
    except InputError as e:
        raise ConfigError(f"{e}; the file is corrupt") from None


def _portable(cfg, folder):
    """A config as the plan stores it: without the run folder, a data file's path relative to ``folder``."""
    c = {k: v for k, v in json.loads(json.dumps(cfg)).items() if k != "out"}
    if c.get("data") not in (None, "synthetic", "nuclei"):
        c["data"] = os.path.relpath(os.path.abspath(c["data"]), os.path.abspath(folder))
    return c


def _take(data, idx):
    images, masks, labels = data
    return images[idx], masks[idx], None if labels is None else labels[idx]


def _train_and_score(cfg, train, val, folder, progress):
    """Train one configuration (resuming from folder/checkpoint.npz when present); returns
    (metrics on val, history).  val None: no validation during training (the final model)."""
    from .runs import build_run
    from .train import evaluate
    cfg = dict(cfg, out=folder)
    trainer = build_run(cfg, progress=progress, log=None, data=(train, val if val is not None else None))
    if os.path.exists(trainer.checkpoint_path):
        trainer.load(trainer.checkpoint_path)
    trainer.fit(cfg["epochs"])
    scores = evaluate(trainer.model, *val) if val is not None else None
    return scores, trainer.history, trainer


def cross_validate(config, folds=5, grid=None, select="dice", test_fraction=0.2, out=None, progress=True, log=print):
    """Cross-validate every setting of ``grid`` on ``config`` (see the module docstring).

    config: a training config dict (partial: merged into the defaults and validated).
    grid: {key: [values]} with top-level config keys or nested ones (model_config.base_channels,
    or just base_channels when unambiguous); None: the config alone.  select: the validation metric
    (mean over folds) that picks the best setting, one of METRICS.  Returns a dict with the split,
    per-fold metrics and histories, the per-setting summaries, the best setting and its test metrics.
    """
    from ..io import LOCK_NAME, InputError, check_out_path, lock_folder, unlock_folder
    cfg = C.merge(config)
    if select not in METRICS:
        raise ConfigError(f"select: unknown metric {select!r}; choose from {', '.join(METRICS)}")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"folds: expected an integer >= 2, got {folds!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    grid_settings = settings(cfg, grid)
    out = out or cfg["out"]
    try:
        check_out_path(out, "folder")
    except InputError as e:
        raise ConfigError(str(e)) from None
    plan_path = os.path.join(out, "cv_plan.json")
    if os.path.isdir(out) and not os.path.exists(plan_path) and \
            [f for f in os.listdir(out) if f != LOCK_NAME]:  # never write into a user's folder
        raise ConfigError(f"'{out}' is not empty and holds no search (no cv_plan.json); choose an empty or "
                          f"new folder with --out")
    lock_folder(out, "cv folder", log=log)  # one process per search folder
    lock_folder(out, "cv folder", log=log)  # one process per search folder
    try:
        return _search(cfg, folds, grid, select, test_fraction, out, progress, log, grid_settings, plan_path)
    finally:
        unlock_folder(out, cleanup=True)  # a refused search leaves no trace


def _search(cfg, folds, grid, select, test_fraction, out, progress, log, grid_settings, plan_path):
    from .runs import check_memory, split_data
    train, val = split_data(cfg)
    pool = tuple(np.concatenate([a, b]) if a is not None else None for a, b in zip(train, val))
    n = len(pool[0])
    if select == "instance_f1" and pool[2] is None:
        raise ConfigError(f"select: 'instance_f1' needs instance labels, and the data ({cfg['data']!r}) has none: "
                          f"every value would be NaN; select on dice, iou, precision, recall, f1 or accuracy")
    for label, scfg in grid_settings:  # the memory of every setting, before anything is trained
        try:
            check_memory(scfg, (n, pool[0].shape[1], pool[0].shape[2], pool[0].shape[3], 0))
        except ConfigError as e:
            raise ConfigError(f"grid setting {label}: {e}" if label else str(e)) from None
    n_test = max(1, int(round(test_fraction * n)))
    if n - n_test < folds:
        raise ConfigError(f"folds: {n} samples leave {n - n_test} after the test set ({n_test}); that is fewer "
                          f"than {folds} folds (use fewer folds, or more data: n_train)")
    fg = pool[1].reshape(n, -1).mean(axis=1)
    test_idx = stratified_split(fg, n_test, cfg["seed"])
    rest = np.setdiff1d(np.arange(n), test_idx)
    fold_idx = [rest[f] for f in stratified_folds(fg[rest], folds, cfg["seed"])]
    split = dict(n=n, test=test_idx.tolist(), folds=[f.tolist() for f in fold_idx], seed=cfg["seed"],
                 stratified_by="foreground fraction")
    # everything that defines a fold's result; paths relative to the folder, so a moved folder is the same search
    plan = dict(split=split, settings=[_portable(c, out) for _, c in grid_settings], folds=folds,
                test_fraction=test_fraction, config=_portable(cfg, out),
                grid={k: list(v) for k, v in (grid or {}).items()})
    if os.path.exists(plan_path):  # an interrupted search resumes only if it is the same search
        old = _read_json(plan_path, "search plan")
        if not isinstance(old, dict) or {k: v for k, v in old.items() if k != "select"} != \
                json.loads(json.dumps(plan)):
            raise ConfigError(f"'{out}' holds another search (other settings, grid, folds, test fraction or data "
                              f"split: {plan_path}); choose another folder with --out")
    _write_json(plan_path, dict(plan, select=select))
    results = dict(split=split, settings=[], select=select)
    from tqdm.auto import tqdm
    bar = tqdm(total=len(grid_settings) * folds, desc="cross-validation", disable=not progress, leave=True)
    for s, (label, scfg) in enumerate(grid_settings):
        per_fold = []
        for k in range(folds):
            bar.set_description(f"setting {s + 1}/{len(grid_settings)} {label or ''} fold {k + 1}/{folds}")
            folder = os.path.join(out, f"setting{s + 1}", f"fold{k + 1}")
            done = os.path.join(folder, "result.json")
            if os.path.exists(done):  # finished before an interruption: not trained again
                r = _read_json(done, "fold result")
                if not isinstance(r, dict) or not isinstance(r.get("metrics"), dict) or "history" not in r:
                    raise ConfigError(f"fold result '{done}' is not a result written by npunet cv; delete it "
                                      f"and that fold is trained again")
                per_fold.append(r)
            else:
                t0 = time.perf_counter()
                tr = np.concatenate([fold_idx[j] for j in range(folds) if j != k])
                scores, history, _ = _train_and_score(scfg, _take(pool, tr), _take(pool, fold_idx[k]), folder, progress)
                r = dict(fold=k + 1, metrics=scores, history=history, seconds=time.perf_counter() - t0)
                _write_json(done, r)
                per_fold.append(r)
            bar.update(1)
        summary = {m: (float(np.mean([f["metrics"].get(m, np.nan) for f in per_fold])),
                       float(np.std([f["metrics"].get(m, np.nan) for f in per_fold]))) for m in METRICS}
        results["settings"].append(dict(setting=label, config=scfg, folds=per_fold, summary=summary))
        if log:
            log(f"setting {s + 1} {label}: " + ", ".join(f"{m} {v[0]:.3f} ± {v[1]:.3f}" for m, v in summary.items()))
    bar.close()
    means = [results["settings"][i]["summary"][select][0] for i in range(len(grid_settings))]
    if all(np.isnan(means)):
        raise ConfigError(f"select: every setting's mean validation {select} is NaN; select on another metric")
    best = int(np.nanargmax(means))
    results["best"] = dict(index=best + 1, setting=results["settings"][best]["setting"])
    _write_csv(os.path.join(out, "cv_results.csv"), results, list(grid or {}))
    if log:
        log(f"best by mean validation {select}: setting {best + 1} {results['best']['setting']}; "
            f"retraining it on all {len(rest)} training samples")
    final = os.path.join(out, "final")
    chosen = dict(index=best + 1, setting=results["best"]["setting"],
                  config=_portable(results["settings"][best]["config"], out))
    chosen_path = os.path.join(final, "setting.json")
    if os.path.exists(os.path.join(final, "checkpoint.npz")) and (
            not os.path.exists(chosen_path) or _read_json(chosen_path, "final setting") != json.loads(json.dumps(chosen))):
        # the final model of another setting (another --select): it is retrained, not reused
        os.remove(os.path.join(final, "checkpoint.npz"))
        if log:
            log(f"the final model in '{final}' was trained for another setting; retraining it for setting {best + 1}")
    os.makedirs(final, exist_ok=True)
    _write_json(chosen_path, chosen)
    test_scores, history, trainer = _train_and_score(results["settings"][best]["config"], _take(pool, rest), None,
                                                     final, progress)
    results["test_setting"] = dict(index=best + 1, setting=results["best"]["setting"])
    from .train import evaluate, predict_masks
    test = _take(pool, test_idx)
    results["test"] = evaluate(trainer.model, *test)
    results["final_checkpoint"] = trainer.checkpoint_path
    results["figures"] = _figures(out, results, test, predict_masks(trainer.model, test[0]))
    _write_json(os.path.join(out, "cv_summary.json"), {k: v for k, v in results.items() if k != "settings"} |
                {"settings": [{k: v for k, v in s.items() if k != "folds"} for s in results["settings"]]})
    if log:
        log(f"test set ({len(test_idx)} images, seen once) with setting {best + 1} {results['best']['setting']}: " +
            ", ".join(f"{m} {results['test'][m]:.3f}" for m in METRICS if m in results["test"]))
    return results


def _write_csv(path, results, keys):
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["setting"] + keys + ["fold"] + list(METRICS) + ["seconds"])
    for i, s in enumerate(results["settings"], 1):
        for fold in s["folds"]:
            w.writerow([i] + [json.dumps(s["setting"][k]) for k in keys] + [fold["fold"]] +
                       [f"{fold['metrics'].get(m, float('nan')):.4f}" for m in METRICS] + [f"{fold['seconds']:.1f}"])
    data = text.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def format_table(results):
    """The per-setting table: mean ± std across folds of every metric."""
    head = ["setting", "grid values"] + list(METRICS)
    rows = []
    for i, s in enumerate(results["settings"], 1):
        mark = " *" if results.get("best", {}).get("index") == i else ""
        rows.append([f"{i}{mark}", json.dumps(s["setting"])] + [f"{m:.3f} ± {sd:.3f}" for m, sd in
                                                                (s["summary"][k] for k in METRICS)])
    widths = [max(len(str(r[c])) for r in [head] + rows) for c in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)) for r in [head] + rows]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def _figures(out, results, test, pred):
    import matplotlib.pyplot as plt

    from ..viz.plots import plot_predictions, save_figure
    S = len(results["settings"])
    fig, ax = plt.subplots(1, S, figsize=(4 * S, 3.2), squeeze=False)
    for i, s in enumerate(results["settings"]):
        for fold in s["folds"]:
            ax[0, i].plot(fold["history"]["epoch"], fold["history"]["val_dice"], marker="o", lw=1,
                          label=f"fold {fold['fold']}")
        ax[0, i].set_title(f"setting {i + 1}: {json.dumps(s['setting'])}", fontsize=8)
        ax[0, i].set_xlabel("epoch"); ax[0, i].set_ylim(0, 1)
    ax[0, 0].set_ylabel("validation Dice"); ax[0, 0].legend(fontsize=7)
    curves = save_figure(fig, os.path.join(out, "cv_curves.png"))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * S + 2), 3.2))
    means = [s["summary"]["dice"][0] for s in results["settings"]]
    stds = [s["summary"]["dice"][1] for s in results["settings"]]
    colors = ["tab:green" if i + 1 == results["best"]["index"] else "tab:gray" for i in range(S)]
    ax.bar(range(1, S + 1), means, yerr=stds, capsize=4, color=colors)
    names = ["\n".join(f"{k.split('.')[-1]}={v}" for k, v in s["setting"].items()) or "config"
             for s in results["settings"]]                 # the settings' values, not their numbers
    ax.set_xticks(range(1, S + 1), names, fontsize=8)
    ax.set_xlabel("setting (green: the best, retrained on all folds)"); ax.set_ylabel("validation Dice (mean ± std)")
    ax.set_ylim(0, 1)
    dice = save_figure(fig, os.path.join(out, "cv_dice.png"))
    k = min(4, len(test[0]))
    preds = plot_predictions(test[0][:k], test[1][:k], pred[:k], os.path.join(out, "test_predictions.png"))
    return dict(curves=curves, dice=dice, predictions=preds)
