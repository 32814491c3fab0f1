"""npunet.export (PyTorch export), checked without PyTorch: the generated model.py parses, imports only
torch, and, run against a small stand-in for torch.nn that records what it builds, registers every key of
npunet's state_dict exactly once with npunet's shapes and order; CONFIG round-trips through the npunet
constructor; weights.safetensors holds npunet's keys, shapes, dtypes and values; the CLI exports a
checkpoint (pruned U-Net++ included) and refuses what it cannot express."""
import ast
import json
import os
import sys
import types

import numpy as np
import pytest

import npunet
from npunet import nn
from npunet.export import ExportError, model_source, to_pytorch
from npunet.io import load_safetensors
from npunet.models import EncoderUNet, UNet, UNet3Plus, UNetPlusPlus

CASES = {
    "unet-valid-2015": lambda: UNet(1, 2, 4, depth=4, padding="valid"),
    "unet-same-bn-bilinear": lambda: UNet(1, 2, 4, depth=3, padding="same", batch_norm=True, up_mode="bilinear"),
    "unet-residual-valid-dropout": lambda: UNet(1, 3, 4, depth=2, block="residual", batch_norm=True, dropout=0.5),
    "unet-separable": lambda: UNet(3, 2, 4, depth=2, padding="same", block="separable"),
    "unetpp-ds-pruned-L2": lambda: UNetPlusPlus(1, 2, filters=(4, 8, 16, 32), depth=3, deep_supervision=True).prune(2),
    "unetpp-transpose-plain": lambda: UNetPlusPlus(1, 1, filters=(4, 8, 16), depth=2, batch_norm=False,
                                                   up_mode="transpose"),
    "unet3plus-ds-cgm": lambda: UNet3Plus(1, 1, filters=(4, 8, 8, 8, 16), cat_channels=4, deep_supervision=True,
                                          cgm=True),
}


# ---------------------------------------------------------------- a stand-in for torch.nn

class _Module:
    """Records children, parameters and buffers in registration order, as torch.nn.Module names them."""

    def __init__(self, *a, **k):
        object.__setattr__(self, "_entries", [])   # (name, shape) of own parameters and buffers
        object.__setattr__(self, "_children", {})

    def __setattr__(self, name, value):
        if isinstance(value, _Module):
            self._children[name] = value
        object.__setattr__(self, name, value)

    def _p(self, name, shape):
        self._entries.append((name, tuple(shape)))

    def keys(self, prefix=""):
        out = [(prefix + n, s) for n, s in self._entries]
        for n, c in self._children.items():
            out += c.keys(f"{prefix}{n}.")
        return out


def _stub_torch():
    torch = types.ModuleType("torch")
    tnn = types.ModuleType("torch.nn")

    class Conv2d(_Module):
        def __init__(self, cin, cout, k, stride=1, padding=0, output_padding=0, groups=1, bias=True):
            super().__init__()
            k = k if isinstance(k, tuple) else (k, k)
            self._p("weight", self._shape(cin, cout, groups, k))
            if bias:
                self._p("bias", (cout,))

        def _shape(self, cin, cout, g, k):
            return (cout, cin // g) + k

    class ConvTranspose2d(Conv2d):
        def _shape(self, cin, cout, g, k):
            return (cin, cout // g) + k

    class BatchNorm2d(_Module):
        def __init__(self, c, eps=1e-5, momentum=0.1):
            super().__init__()
            for n, s in (("weight", (c,)), ("bias", (c,)), ("running_mean", (c,)), ("running_var", (c,)),
                         ("num_batches_tracked", ())):
                self._p(n, s)

    class Sequential(_Module):
        def __init__(self, *mods):
            super().__init__()
            for i, m in enumerate(mods):
                setattr(self, str(i), m)

    tnn.Module = _Module
    for cls in (Conv2d, ConvTranspose2d, BatchNorm2d, Sequential):
        setattr(tnn, cls.__name__, cls)
    for name in ("ReLU", "Sigmoid", "Identity", "Flatten", "Dropout", "MaxPool2d", "Upsample", "AdaptiveMaxPool2d"):
        setattr(tnn, name, type(name, (_Module,), {}))
    torch.nn = tnn
    return torch, tnn


def _run_generated(src, monkeypatch):
    torch, tnn = _stub_torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", tnn)
    ns = {}
    exec(compile(src, "model.py", "exec"), ns)
    return ns


def _imports(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", list(CASES))
def test_model_py_names_every_state_dict_key_once(name, monkeypatch):
    npunet.manual_seed(0)
    m = CASES[name]()
    src = model_source(m)
    tree = ast.parse(src)
    assert _imports(tree) == {"torch"}
    config = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and n.targets[0].id == "CONFIG")
    assert config == json.loads(json.dumps(m.config))
    rebuilt = type(m)(**config)               # the constructor arguments round-trip ...
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    ns = _run_generated(src, monkeypatch)
    keys = ns["build_model"]().keys()         # ... and the generated layers are npunet's, key for key
    names = [k for k, _ in keys]
    assert len(names) == len(set(names)), [k for k in names if names.count(k) > 1]
    assert keys == [(k, v.shape) for k, v in m.state_dict().items()]


def test_forwards_follow_the_configuration():
    src = model_source(UNet(1, 2, 4, depth=2, padding="valid", dropout=0.5))
    assert "x3 = self.drop(x3)" in src and "x = self.up1(x3, x2)" in src and "CropConcat" in src
    assert "self.drop" not in model_source(UNet(1, 2, 4, depth=2))
    pp = model_source(CASES["unetpp-ds-pruned-L2"]())
    assert "self.final(x0_2)" in pp and "x0_3" not in pp and "final1" not in pp
    u3 = model_source(CASES["unet3plus-ds-cgm"]())
    assert "return seg, cls" in u3 and "return self.gate(seg, cls)" in u3 and "self.upscore5(self.outconv5(hd5))" in u3
    plain = model_source(UNet3Plus(1, 1, filters=(4, 8, 8, 8, 16), cat_channels=4))
    assert "gate" not in plain and "upscore" not in plain and "return seg" in plain


def test_weights_and_files(tmp_path, rng):
    npunet.manual_seed(0)
    m = CASES["unet-same-bn-bilinear"]()
    sd = m.state_dict()
    sd["down1.bn1.running_mean"] = rng.standard_normal(sd["down1.bn1.running_mean"].shape).astype(np.float32)
    sd["down1.bn1.num_batches_tracked"] = np.array(5, np.int64)
    m.load_state_dict(sd)
    paths = to_pytorch(m, str(tmp_path), run_config={"loss": "bce_dice", "lr": 0.01, "batch_size": 2,
                                                     "augment": {"gray": False}},
                       input_range=(0.1, 0.9))
    assert [os.path.basename(p) for p in paths] == ["model.py", "weights.safetensors", "train_ddp.py", "README.md"]
    w = load_safetensors(str(tmp_path / "weights.safetensors"))
    assert set(w) == set(sd)
    for k, v in sd.items():
        assert w[k].shape == v.shape and w[k].dtype == v.dtype, k
        np.testing.assert_array_equal(w[k], v)
    assert w["down1.bn1.num_batches_tracked"].dtype == np.int64 and w["down1.bn1.num_batches_tracked"] == 5
    train = ast.parse((tmp_path / "train_ddp.py").read_text())
    recipe = next(ast.literal_eval(n.value) for n in train.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "RECIPE")
    assert (recipe["loss"], recipe["lr"], recipe["batch_size"], recipe["input_range"]) == ("bce_dice", 0.01, 2, [0.1, 0.9])
    assert recipe["architecture"] == "UNet" and not recipe["valid_padding"]
    assert recipe["augment"]["gray"] is False and recipe["augment"]["flips"] is True    # merged into the defaults
    src = (tmp_path / "train_ddp.py").read_text()
    assert "DistributedDataParallel" in src and "DistributedSampler" in src and "load_state_dict" in src
    assert "torchrun --nproc_per_node" in (tmp_path / "README.md").read_text()


def test_encoder_unet_exports_smp_unet(tmp_path):
    m = EncoderUNet("resnet18", in_channels=1, num_classes=2, encoder_depth=3, decoder_channels=(16, 8, 4))
    to_pytorch(m, str(tmp_path))
    tree = ast.parse((tmp_path / "model.py").read_text())
    assert _imports(tree) == {"segmentation_models_pytorch"}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "Unet"]
    assert len(calls) == 1
    config = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign))
    assert EncoderUNet(**config).config == m.config
    w = load_safetensors(str(tmp_path / "weights.safetensors"))
    assert set(w) == set(m.state_dict())      # (safetensors stores keys sorted)


def test_refuses_what_it_cannot_express(tmp_path):
    m = UNet(1, 2, 4, depth=2)
    m.outc = nn.Sequential(nn.Conv2d(4, 2, 1), nn.SiLU())     # a layer the export has no PyTorch twin for
    with pytest.raises(ExportError) as e:
        to_pytorch(m, str(tmp_path / "x"))
    msg = str(e.value)
    assert "\n" not in msg and "'outc.1'" in msg and "SiLU" in msg
    assert not (tmp_path / "x").exists()                        # nothing half-written
    u = UNet(1, 2, 4, depth=2)
    del u._modules["pool2"]                                     # a tree the forward cannot be written for
    with pytest.raises(ExportError, match=r"^export: UNet: its forward calls pool2, which the model does not have"):
        to_pytorch(u, str(tmp_path / "z"))
    with pytest.raises(ExportError, match="Sequential cannot be exported"):
        to_pytorch(nn.Sequential(nn.Conv2d(1, 1, 1)), str(tmp_path / "y"))


def _checkpoint(tmp_path, model_name, model_config):
    from npunet.config import merge
    from npunet.runs import build_run
    cfg = {"model": model_name, "model_config": model_config, "n_train": 2, "n_val": 1, "size": 16, "epochs": 1,
           "batch_size": 2, "loss": "bce_dice", "weight_map": False, "out": str(tmp_path / "run")}
    tr = build_run(merge(cfg), progress=False, log=None)
    tr.save(tr.checkpoint_path)
    return tr


def test_cli_exports_a_checkpoint_pruned(tmp_path, capsys):
    from npunet.cli import main
    tr = _checkpoint(tmp_path, "UNetPlusPlus", {"filters": [4, 8, 16, 32], "depth": 3, "deep_supervision": True,
                                                "num_classes": 1})
    out = tmp_path / "torch"
    main(["export", "--checkpoint", tr.checkpoint_path, "--out", str(out), "--prune", "2"])
    assert "torchrun --nproc_per_node 2" in capsys.readouterr().out
    tree = ast.parse((out / "model.py").read_text())
    config = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign))
    assert config["depth"] == 2 and config["deep_supervision"] is False
    w = load_safetensors(str(out / "weights.safetensors"))
    pruned = tr.model.prune(2).state_dict()
    assert set(w) == set(pruned)
    np.testing.assert_array_equal(w["final.weight"], tr.model.final2.weight.data)   # the L2 head, trained for it
    recipe = (out / "train_ddp.py").read_text()
    assert "'loss': 'bce_dice'" in recipe
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", str(tmp_path / "missing.npz"), "--out", str(out)])
    assert "npunet export:" in str(e.value) and "missing.npz" in str(e.value)


def test_cli_refuses_prune_of_a_unet(tmp_path):
    from npunet.cli import main
    tr = _checkpoint(tmp_path, "UNet", {"base_channels": 4, "depth": 2, "num_classes": 1})
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", tr.checkpoint_path, "--out", str(tmp_path / "t"), "--prune", "1"])
    assert str(e.value) == "npunet export: export: --prune applies to a UNetPlusPlus, the checkpoint holds a UNet"
