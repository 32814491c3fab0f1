"""The U-Net Explainer page (npunet.viz.explain): the numbers in the page are the model's."""
import base64
import json
import os
import numpy as np
import pytest

from npunet import losses
from npunet.data import make_cells, weight_map
from npunet.models import UNet, UNet3Plus, UNetPlusPlus
from npunet.viz import block_graph, explain
from npunet.viz.explain import GRID_PIXELS, explainer_data


def _f32(s):
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


def _page_data(path):
    text = open(path, encoding="utf-8").read()
    start = text.index('<script type="application/json" id="data">') + len('<script type="application/json" id="data">')
    return text, json.loads(text[start:text.index("</script>", start)])


@pytest.fixture(scope="module")
def cells():
    x, lab, m = make_cells(1, 32, seed=3)
    return x[0], lab[0], m[0]


def _unet():
    return UNet(1, 2, base_channels=4, depth=2, padding="same", batch_norm=True).to(np.float64)


def test_page_is_one_offline_file_with_the_models_blocks(tmp_path, cells):
    x, lab, _ = cells
    net = _unet()
    r = explain(net, x, tmp_path / "p.html", labels=lab)
    text, d = _page_data(tmp_path / "p.html")
    assert r["bytes"] == os.path.getsize(tmp_path / "p.html")
    _, order, _, _ = block_graph(net, (1, 1, 32, 32))
    assert [b["name"] for b in d["blocks"]] == order == r["blocks"]
    assert "default-src 'none'" in text and "http://" not in text.replace("http://www.w3.org", "") \
        and "https://" not in text and "<script src" not in text
    for b in order:  # every drawn box is an SVG element the page can make clickable
        if b.startswith(("down", "up", "outc")):
            assert f'id="blk-{b}"' in d["svg"]
    blk = {b["name"]: b for b in d["blocks"]}
    assert blk["down1"]["params"] == net.down1.num_parameters()
    assert blk["down1"]["rf"] == 5 and blk["down2"]["rf"] == 14 and blk["down3"]["rf"] == 32   # 3x3 convs, 2x2 pools
    assert blk["up2"]["crop"]["skip_from"] == "down1" and blk["up2"]["crop"]["top"] == 0
    assert all(m.training for m in net.modules())     # the model's modes are given back
    net.eval()
    y = net.down2(net.pool1(net.down1(x[None].astype(np.float64))))
    assert blk["down2"]["features"]["lo"] == pytest.approx(float(y.min()), abs=1e-12)
    assert blk["down2"]["features"]["hi"] == pytest.approx(float(y.max()), abs=1e-12)


def test_backward_numbers_equal_model_backward_of_the_weighted_loss(cells):
    x, lab, mask = cells
    net = _unet()
    d = explainer_data(net, x, labels=lab)
    # independent: the same loss and model.backward, the gradient caught where UNet.backward hands it to down1
    net.eval()
    for m in net.modules():
        if not m._leaf:
            object.__setattr__(m, "training", True)
    z = net(x[None].astype(np.float64))
    w = weight_map(lab, mask=lab > 0)[None]
    loss = losses.CrossEntropyLoss()
    value = loss.forward(z, (lab > 0)[None].astype(np.int64), w)
    caught = {}
    for name in ("down1", "down2", "up1"):
        child = getattr(net, name)
        orig = child.backward
        object.__setattr__(child, "backward", lambda g, _o=orig, _n=name: caught.setdefault(_n, g) is g and _o(g))
    net.backward(loss.backward())
    assert d["loss"] == pytest.approx(value, rel=1e-12)
    blk = {b["name"]: b for b in d["blocks"]}
    for name, g in caught.items():
        assert blk[name]["grad_norms"]["wm"] == pytest.approx(float(np.linalg.norm(g)), rel=1e-10)
    # down1 feeds pool1 and up2's copy: two contributions whose sum is the gradient
    c = blk["down1"]["contributions"]
    assert sorted(x["block"] for x in c) == ["pool1", "up2"] and blk["down1"]["contrib_sum_error"] < 1e-12
    assert np.sqrt(sum(x["norm"] ** 2 for x in c)) > 0
    assert d["has_wm"] and blk["down1"]["grad_norms"]["plain"] != blk["down1"]["grad_norms"]["wm"]


def _check_ops(d):
    kinds = set()
    for b in d["blocks"]:
        for o in b["ops"]:
            kinds.add(o["kind"])
            win, out = _f32(o["window"]), _f32(o["out"])
            ry, rx = o["ry"], o["rx"]
            if o["kind"] == "conv":
                k, ci, nco = o["k"], o["cin"], o["cout_shown"]
                win = win.reshape(ci, ry + k - 1, rx + k - 1).astype(np.float64)
                ker = _f32(o["kernel"]).reshape(nco, ci, k, k).astype(np.float64)
                bias = _f32(o["bias"])
                ref = np.array([[[(win[:, i:i + k, j:j + k] * ker[c]).sum() + bias[c] for j in range(rx)] for i in range(ry)]
                                for c in range(nco)])
            elif o["kind"] == "maxpool":
                k, s, c = o["k"], o["s"], o["c_shown"]
                win = win.reshape(c, *o["wh"])
                ref = np.array([[[win[q, i * s:i * s + k, j * s:j * s + k].max() for j in range(rx)] for i in range(ry)]
                                for q in range(c)])
            elif o["kind"] == "upconv":
                k, ci, nco = o["k"], o["cin"], o["cout_shown"]
                win = win.reshape(ci, *o["wh"]).astype(np.float64)
                ker = _f32(o["kernel"]).reshape(ci, nco, k, k).astype(np.float64)
                bias = _f32(o["bias"])
                ref = np.array([[[(win[:, i // k, j // k] * ker[:, c, (o["oy"] + i) % k, (o["ox"] + j) % k]).sum() + bias[c]
                                  for j in range(rx)] for i in range(ry)] for c in range(nco)])
            else:
                c = o["c_shown"]
                win = win.reshape(c, *o["wh"]).astype(np.float64)
                ref = np.array([[[sum(wy * wx * win[q, a, bb] for a, wy in ((Y[0], 1 - Y[2]), (Y[1], Y[2]))
                                      for bb, wx in ((X[0], 1 - X[2]), (X[1], X[2]))) for X in o["xs"]] for Y in o["ys"]]
                                for q in range(c)])
            assert np.abs(ref.ravel() - out).max() < 1e-5, (b["name"], o["layer"])
    return kinds


def test_one_operation_numbers_reproduce_the_layer_output():
    x, lab, _ = make_cells(1, 32, seed=4)
    d = explainer_data(UNet(1, 2, base_channels=4, depth=2, padding="same"), x[0], labels=lab[0])
    d2 = explainer_data(UNet(1, 2, base_channels=4, depth=2, padding="same", up_mode="bilinear"), x[0])
    assert _check_ops(d) | _check_ops(d2) == {"conv", "maxpool", "upconv", "bilinear"}
    assert "own thresholded prediction" in d2["target_note"] and not d2["has_wm"]


def test_valid_unet_crop_is_the_papers(cells):
    net = UNet(1, 2, base_channels=2, depth=1)   # valid: 3x3 convs without padding
    x = np.pad(cells[0], ((0, 0), (2, 2), (2, 2)))[:, :36, :36]  # 36 -> 32 -> 16 -> 12 -> 24 -> 20
    d = explainer_data(net, x)
    up = {b["name"]: b for b in d["blocks"]}["up1"]
    assert up["crop"]["skip_shape"][2:] == [32, 32] and up["crop"]["up_shape"][2:] == [24, 24]
    assert (up["crop"]["top"], up["crop"]["left"]) == (4, 4)
    assert d["images"]["out_shape"] == [20, 20]


def test_unetpp_and_unet3plus_show_summed_node_gradients_and_five_branches(cells):
    x, lab, _ = cells
    pp = explainer_data(UNetPlusPlus(1, 2, filters=[2, 4, 8, 16], depth=3, deep_supervision=True), x, labels=lab)
    b = {q["name"]: q for q in pp["blocks"]}
    # X^{0,0} is read by X^{1,0}'s pool and by every X^{0,j}, j = 1..3: four gradients add up
    assert len(b["x0_0"]["contributions"]) == 4 and b["x0_0"]["contrib_sum_error"] < 1e-5
    u3 = explainer_data(UNet3Plus(1, 2, filters=[2, 4, 8, 16, 32], cat_channels=2, deep_supervision=True), x, labels=lab)
    b = {q["name"]: q for q in u3["blocks"]}
    for stage in ("hd1", "hd2", "hd3", "hd4"):
        assert len(b[stage]["sent"]) == 5
    assert sorted(s["to"] for s in b["hd3"]["sent"]) == sorted(["h1_PT_hd3", "h2_PT_hd3", "h3_Cat_hd3", "hd4_UT_hd3",
                                                               "hd5_UT_hd3"])
    assert _check_ops(u3) >= {"conv", "maxpool", "bilinear"}


def test_large_layers_are_downsampled_and_the_true_shape_kept():
    x = np.random.default_rng(0).random((1, 256, 256)).astype(np.float32)
    d = explainer_data(UNet(1, 2, base_channels=4, depth=1, padding="same"), x)
    f = {b["name"]: b for b in d["blocks"]}["down1"]["features"]
    assert f["channels"] == 4 and f["factor"] == 2 and f["tile_h"] == 128
    assert f["shown"] * f["tile_h"] * f["tile_w"] <= GRID_PIXELS


def test_snapshots_give_the_training_slider(cells, tmp_path):
    x, lab, _ = cells
    net = _unet()
    first = net.state_dict()
    second = {k: v * 1.01 if k.endswith("weight") else v for k, v in first.items()}
    d = explainer_data(net, x, labels=lab, snapshots=[("epoch 1", first), ("epoch 2", second)])
    assert [s["label"] for s in d["snapshots"]] == ["epoch 1", "epoch 2"]
    assert set(d["snapshots"][0]["features"]) == {b["name"] for b in d["blocks"]}
    assert all(np.array_equal(v, first[k]) for k, v in net.state_dict().items())


def test_bad_input_is_one_clear_line(cells):
    with pytest.raises(ValueError, match="image must be"):
        explainer_data(_unet(), np.zeros((2, 1, 32, 32)))
    with pytest.raises(ValueError, match="mask has shape"):
        explainer_data(_unet(), cells[0], mask=np.zeros((8, 8)))


def test_cli_explain_from_a_checkpoint(tmp_path, cells, capsys):
    from npunet.demo import demo_config
    from npunet.runs import build_run
    cfg = demo_config("unet", out=str(tmp_path / "run"), n_train=2, batch_size=2)
    cfg.update(size=32, n_val=1, model_config=dict(cfg["model_config"], base_channels=4, depth=2))
    trainer = build_run(cfg, progress=False, log=lambda *a: None)
    trainer.save(trainer.checkpoint_path)
    from PIL import Image
    Image.fromarray((cells[0][0] * 255 / cells[0].max()).astype(np.uint8)).save(tmp_path / "cell.png")
    from npunet.cli import main
    args = ["explain", "--checkpoint", trainer.checkpoint_path, "--image", str(tmp_path / "cell.png")]
    main(args + ["--out", str(tmp_path / "e.html")])
    _, d = _page_data(tmp_path / "e.html")
    assert d["model"] == "UNet" and "Checkpoint checkpoint.npz" in d["note"] and "snapshots" not in d
    capsys.readouterr()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(SystemExit) as e:
        main(args + ["--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "f.html")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().count("\n") == 0 and "the mask" in err and "(5, 5)" in err
