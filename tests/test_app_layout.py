"""The app's layout: one model registry read everywhere, the old module paths, and an import graph
whose arrows run down (kernels below backends, the library below the app)."""
import ast
import importlib
import os
import subprocess
import sys

import pytest

import npunet
from npunet.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "npunet")


def test_config_trainer_cli_and_presets_read_the_registry():
    from npunet.app import cli, config, runs, train
    assert config.MODELS == tuple(registry.REGISTRY) == ("UNet", "UNetPlusPlus", "UNet3Plus", "EncoderUNet")
    assert config.SCHEMA["model"].choices == config.MODELS
    assert train.MODEL_CLASSES == {n: e.cls for n, e in registry.REGISTRY.items()}
    assert list(runs.PRESETS) == ["unet", "unetpp", "unet3plus", "resnet18", "resnet34", "mobilenet_v2",
                                  "efficientnet-b0"]
    assert runs.PRESETS["resnet34"] == ("EncoderUNet", dict(encoder_name="resnet34", in_channels=1, num_classes=2))
    sub = next(a for a in cli.build_parser()._actions if a.dest == "cmd").choices
    choices = {cmd: next(a.choices for a in sub[cmd]._actions if a.dest == "model") for cmd in ("demo", "explain",
                                                                                                "summary")}
    assert list(choices["demo"]) == list(choices["explain"]) == list(runs.PRESETS)
    assert list(choices["summary"]) == ["unet", "unetpp", "unet3plus"]


def test_summary_builders_keep_the_paper_sizes():
    from npunet import init
    with init.shapes_only():
        m, size = registry.summary_models()["unet"].summary(1, 2, None, None, False)
        assert (m.num_parameters(), size) == (31_030_658, 572)
        m, size = registry.summary_models()["unet3plus"].summary(3, 1, None, None, False)
        assert (m.num_parameters(), size) == (26_991_687, 256)  # deep supervision + CGM, as the paper's table
        with pytest.raises(ValueError, match=r"UNet 3\+ has five levels \(depth 4\), got --depth 3"):
            registry.summary_models()["unet3plus"].summary(1, 2, None, 3, False)


# A model added by one registry entry: the config accepts it, `npunet demo --model tiny` and
# `npunet summary --model tiny` offer it, a run trains it and its checkpoint loads back as it.
_NEW_MODEL = r"""
import json, sys
from npunet.models import UNet, registry

class TinyUNet(UNet):
    pass

registry.REGISTRY["TinyUNet"] = registry.ModelEntry(
    "TinyUNet", TinyUNet, dict(in_channels=1, num_classes=2, base_channels=2, depth=1, padding="same"),
    presets={"tiny": {}}, summary=lambda c, k, base, depth, same: (TinyUNet(c, k, base or 2, depth=depth or 1,
                                                                            padding="same"), 32))

from npunet.app import cli, config, runs, train
from npunet.viz.architecture import entry_of
out = sys.argv[1]
cfg = config.merge({"model": "TinyUNet", "n_train": 2, "n_val": 1, "size": 16, "epochs": 1, "batch_size": 2,
                    "out": out})
trainer = runs.build_run(cfg, progress=False, log=lambda m: None)
trainer.fit(1)
model, meta = train.load_model(out + "/checkpoint.npz")
parser = cli.build_parser()
demo = parser.parse_args(["demo", "--model", "tiny"])
cli.main(["summary", "--model", "tiny", "--size", "16"])
print(json.dumps([type(model).__name__, meta["architecture"], config.MODEL_DEFAULTS["TinyUNet"]["base_channels"],
                  runs.PRESETS["tiny"][0], demo.model, entry_of(model).name]))
"""


def test_a_new_model_is_one_registry_entry(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = subprocess.run([sys.executable, "-c", _NEW_MODEL, str(tmp_path / "run")], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "trace: 16→8→16" in r.stdout  # the summary of the new model
    assert r.stdout.strip().splitlines()[-1] == \
        '["TinyUNet", "TinyUNet", 2, "TinyUNet", "tiny", "TinyUNet"]'


@pytest.mark.parametrize("name", ["cli", "config", "cv", "demo", "runs", "train"])
def test_old_module_paths_are_the_moved_modules(name):
    old = importlib.import_module(f"npunet.{name}")
    assert old is importlib.import_module(f"npunet.app.{name}")  # monkeypatching either patches both
    assert getattr(npunet, name) is old


def test_public_names_at_their_old_paths():
    from npunet.app.train import Trainer, load_model
    from npunet.backends import geometry as shim
    from npunet import geometry
    import npunet.train
    assert (npunet.train.Trainer, npunet.train.load_model) == (Trainer, load_model)
    assert shim.pool_windows is geometry.pool_windows and shim.interp_indices is geometry.interp_indices
    from npunet.cli import main
    from npunet.config import ConfigError
    from npunet.io import ConfigError as io_error
    assert callable(main) and ConfigError is io_error


def _imports(path, top_level_only=False):
    """Every npunet module an imported file names (relative imports resolved)."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    package = rel[:-1]
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return [m for m in out if m.startswith("npunet")]


def _files(*parts):
    top = os.path.join(PKG, *parts)
    if top.endswith(".py"):
        return [top]
    return [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs if f.endswith(".py")]


def test_kernels_and_geometry_import_nothing_above_them():
    for path in _files("kernels") + _files("geometry.py"):
        for m in _imports(path):
            assert m.split(".")[1] in ("kernels", "geometry", "jitcache"), f"{path} imports {m}"


def test_library_modules_do_not_import_the_app_when_imported():
    """Module-level imports only: a library module may reach the app lazily inside a function
    (npunet.predict given a checkpoint path loads it with app.train.load_model)."""
    app = {"app", "cli", "config", "cv", "demo", "runs", "train"}
    for unit in ("kernels", "backends", "nn", "models", "losses", "optim", "metrics.py", "data", "viz",
                 "init.py", "functional.py", "io.py", "geometry.py"):
        for path in _files(unit):
            for m in _imports(path, top_level_only=True):
                parts = m.split(".")
                assert len(parts) < 2 or parts[1] not in app, f"{path} imports {m} at module level"
