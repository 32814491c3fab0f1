"""K-fold cross-validation and the grid search: the split, the workflow from Python and the
command line, resuming an interrupted search, and bad input."""
import csv
import json
import os

import numpy as np
import pytest

from npunet import cv
from npunet.cli import main
from npunet.config import ConfigError

TINY = {"n_train": 14, "n_val": 2, "size": 32, "batch_size": 2, "epochs": 1,
        "model_config": {"base_channels": 2, "depth": 2}}


def test_stratified_split_and_folds_cover_everything_once():
    fg = np.random.default_rng(0).random(40)
    test = cv.stratified_split(fg, 8, seed=3)
    assert len(set(test.tolist())) == 8
    rest = np.setdiff1d(np.arange(40), test)
    folds = [rest[f] for f in cv.stratified_folds(fg[rest], 4, seed=3)]
    allf = np.concatenate(folds)
    assert sorted(allf.tolist()) == rest.tolist() and not set(allf) & set(test.tolist())
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    # stratified: every fold spans the foreground fractions (each holds one of every 4 consecutive ranks)
    means = [fg[f].mean() for f in folds]
    assert max(means) - min(means) < 0.15 and all(fg[f].min() < 0.3 and fg[f].max() > 0.7 for f in folds)
    # seeded: the same split again, another with another seed
    assert cv.stratified_split(fg, 8, seed=3).tolist() == test.tolist()
    assert cv.stratified_split(fg, 8, seed=4).tolist() != test.tolist()


def test_grid_keys_and_values():
    base = cv.C.merge(TINY)
    s = cv.settings(base, {"lr": [1e-3, 3e-3], "base_channels": [2, 4]})
    assert [lab for lab, _ in s] == [{"lr": 1e-3, "base_channels": 2}, {"lr": 1e-3, "base_channels": 4},
                                     {"lr": 3e-3, "base_channels": 2}, {"lr": 3e-3, "base_channels": 4}]
    assert s[3][1]["model_config"] == dict(base["model_config"], base_channels=4) and s[3][1]["lr"] == 3e-3
    same = cv.settings(base, {"model_config.base_channels": [2], "augment.elastic_p": [0.0]})
    assert same[0][1]["augment"]["elastic_p"] == 0.0
    assert cv.parse_grid(["lr=1e-3,3e-3", "weight_map=true,false", "loss=ce"]) == {
        "lr": [1e-3, 3e-3], "weight_map": [True, False], "loss": ["ce"]}


@pytest.mark.parametrize("grid,msg", [
    ({}, "the grid is empty"),
    ({"lr": []}, "grid key 'lr': expected a non-empty list of values"),
    ({"learning_rate": [1e-3]}, "grid key 'learning_rate' is not a config key"),
    ({"model_config.width": [8]}, "'width' is not a key of model_config"),
    ({"lr": ["fast"]}, "grid setting {'lr': 'fast'}: config key 'lr': expected number"),
    ({"base_channels": ["8"]}, None),  # the model's own check, at build time (TypeError below)
    ({"seed": [1, 2]}, "cannot vary the run folder, the data or the seed"),
])
def test_bad_grids_are_named(grid, msg, tmp_path):
    if msg is None:
        with pytest.raises(ConfigError, match="grid setting {.base_channels.: .8.}: UNet: base_channels must be an integer"):
            cv.cross_validate(TINY, folds=2, grid=grid, out=str(tmp_path), progress=False, log=None)
        return
    with pytest.raises(ConfigError) as e:
        cv.cross_validate(TINY, folds=2, grid=grid, out=str(tmp_path), progress=False, log=None)
    assert msg in str(e.value)


@pytest.mark.parametrize("kw,msg", [
    (dict(folds=20), "16 samples leave 13 after the test set (3); that is fewer than 20 folds"),
    (dict(folds=1), "folds: expected an integer >= 2"),
    (dict(select="auc"), "select: unknown metric 'auc'; choose from dice, iou"),
    (dict(test_fraction=1.5), "test_fraction: expected a number in (0, 1)"),
])
def test_bad_search_arguments_are_named(kw, msg, tmp_path):
    with pytest.raises(ConfigError) as e:
        cv.cross_validate(TINY, out=str(tmp_path), progress=False, log=None, **kw)
    assert msg in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing trained or written


def test_cross_validate_end_to_end_and_resume(tmp_path, monkeypatch):
    calls = []
    real = cv._train_and_score

    def counting(cfg, train, val, folder, progress):
        calls.append(os.path.relpath(folder, tmp_path))
        return real(cfg, train, val, folder, progress)

    monkeypatch.setattr(cv, "_train_and_score", counting)
    grid = {"lr": [1e-3, 1e-2]}
    r = cv.cross_validate(TINY, folds=3, grid=grid, out=str(tmp_path), progress=False, log=None)
    assert len(calls) == 2 * 3 + 1 and calls[-1] == "final"
    # the test set was never part of any fold, and the split is recorded
    plan = json.load(open(tmp_path / "cv_plan.json"))
    test = set(plan["split"]["test"])
    assert len(test) == 3 and all(not test & set(f) for f in plan["split"]["folds"])
    assert sorted(sum(plan["split"]["folds"], []) + sorted(test)) == list(range(16))
    # per-fold metrics and histories; summaries are their mean and std
    s1 = r["settings"][0]
    assert len(s1["folds"]) == 3 and all(len(f["history"]["val_dice"]) == 1 for f in s1["folds"])
    assert s1["summary"]["dice"][0] == pytest.approx(np.mean([f["metrics"]["dice"] for f in s1["folds"]]))
    best = max(range(2), key=lambda i: r["settings"][i]["summary"]["dice"][0])
    assert r["best"]["index"] == best + 1 and set(r["test"]) >= {"dice", "iou", "precision", "recall", "f1"}
    rows = list(csv.DictReader(open(tmp_path / "cv_results.csv")))
    assert len(rows) == 6 and rows[0]["lr"] == "0.001" and rows[3]["fold"] == "1"
    for f in ("cv_curves.png", "cv_dice.png", "test_predictions.png", "final/checkpoint.npz", "cv_summary.json"):
        assert (tmp_path / f).exists(), f
    # an interrupted search: fold 2 of setting 2 never finished; only it (and nothing else) trains again
    os.remove(tmp_path / "setting2" / "fold2" / "result.json")
    calls.clear()
    r2 = cv.cross_validate(TINY, folds=3, grid=grid, out=str(tmp_path), progress=False, log=None)
    assert calls == [os.path.join("setting2", "fold2"), "final"]
    assert r2["settings"][0]["summary"] == r["settings"][0]["summary"]
    # the same folder with another search is refused
    with pytest.raises(ConfigError, match="holds another search"):
        cv.cross_validate(TINY, folds=3, grid={"lr": [5e-3]}, out=str(tmp_path), progress=False, log=None)


def test_cv_command_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "search"
    main(["cv", "--config", str(cfg), "--folds", "2", "--grid", "base_channels=2,3", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert "setting  grid values" in text and '{"base_channels": 3}' in text and "test set, evaluated once:" in text
    assert (out / "cv_results.csv").exists()
    with pytest.raises(SystemExit, match="npunet cv: --grid 'lr': expected key=value1,value2"):
        main(["cv", "--config", str(cfg), "--grid", "lr", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="select: unknown metric 'pixel_acc'"):
        main(["cv", "--config", str(cfg), "--select", "pixel_acc", "--out", str(tmp_path / "y")])
