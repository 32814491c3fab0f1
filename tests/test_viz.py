"""Figures drawn from the models: the U-Net as the paper's Fig. 1."""
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from npunet.models import UNet  # noqa: E402
from npunet.viz import draw_unet_figure  # noqa: E402
from npunet.viz.unet_figure import unet_operations  # noqa: E402


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [fig.axes[0].get_title()]


def test_unet_2015_is_drawn_with_its_23_convolutions_and_four_crops(tmp_path):
    ops = unet_operations(UNet(), (1, 1, 572, 572))
    kinds = [k for k, *_ in ops]
    assert kinds.count("conv") == 18 and kinds.count("up") == 4 and kinds.count("head") == 1
    crops = [(extra[2], shape[2]) for k, shape, extra in ops if k == "cat"]
    assert crops == [(64, 56), (136, 104), (280, 200), (568, 392)]
    fig = draw_unet_figure(UNet(), (1, 1, 572, 572), tmp_path / "u.png")
    texts = _texts(fig)
    assert "UNet: 23 convolutions, 31,030,658 parameters, input 572²" in texts
    for a, b in crops:
        assert f"{a}² → {b}²" in texts
    for size in ("572²", "570²", "568²", "32²", "28²", "388²"):
        assert size in texts
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["conv 3x3, ReLU", "max pool 2x2", "up-conv 2x2", "copy and crop", "conv 1x1", "copied feature map"]
    assert (tmp_path / "u.png").stat().st_size > 10_000
    plt.close("all")


def test_padded_bilinear_unet_copies_without_crop_and_counts_no_up_convolutions():
    net = UNet(1, 2, base_channels=8, depth=3, padding="same", up_mode="bilinear")
    fig = draw_unet_figure(net, (1, 1, 64, 64))
    texts = _texts(fig)
    assert texts.count("copy") == 3 and not any("→" in t for t in texts)
    n3 = sum(k == "conv" for k, *_ in unet_operations(net, (1, 1, 64, 64)))
    assert f"UNet: {n3 + 1} convolutions" in texts[-1]
    assert "bilinear up-sampling x2" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close("all")


def _legend(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_unetpp_heads_above_row_0_dense_arcs_and_the_nested_unet_outlined():
    from npunet.models import UNetPlusPlus
    from npunet.viz import draw_architecture
    fig = draw_architecture(UNetPlusPlus(1, 1, filters=(4, 8, 16, 32, 64), deep_supervision=True), (1, 1, 64, 64))
    ax = fig.axes[0]
    boxes = {t.get_text().split("\n")[0]: t.get_position()[1] for t in ax.texts
             if t.get_text().startswith(("x", "final"))}
    assert all(boxes[f"final{j}"] > boxes["x0_0"] for j in range(1, 5))          # heads off row 0, above it
    outlined = [p for p in ax.patches if getattr(p, "get_linewidth", lambda: 0)() > 2 and hasattr(p, "get_width")]
    assert len(outlined) == 9                                                     # X^{i,0} and X^{i,4-i}
    arcs = [p for p in ax.patches if getattr(getattr(p, "get_connectionstyle", lambda: None)(), "rad", 0) < 0]
    assert len(arcs) >= 10                                                        # dense skips drawn as arcs
    assert "skip (concatenated), dense arcs" in _legend(fig) and any("U-Net inside" in t for t in _legend(fig))
    plt.close("all")


def test_unet3plus_legend_names_pool_same_scale_and_upsample_and_heads_are_full_resolution():
    from npunet.models import UNet3Plus
    from npunet.viz import draw_architecture
    fig = draw_architecture(UNet3Plus(1, 1, filters=(4, 8, 16, 32, 64), cat_channels=4, deep_supervision=True),
                            (1, 1, 64, 64))
    labels = _legend(fig)
    for words in ("max-pooled", "same scale", "up-sampled", "deep supervision head"):
        assert any(words in t for t in labels), labels
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.endswith("1×64×64") for t in texts) == 1 + 5                     # the input and every head
    plt.close("all")


def _struck(fig):
    """(label, arrow) pairs where an arrow's drawn path crosses a label's box (display coordinates)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = fig.axes[0]
    hits = []
    for a in ax.patches:
        if not hasattr(a, "get_connectionstyle"):
            continue
        path = a.get_path().transformed(a.get_transform())
        pts = np.concatenate([seg(np.linspace(0, 1, 60)) for seg, _ in path.iter_bezier()])
        for t in ax.texts:
            bb = t.get_window_extent(r)
            inside = (pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1) & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1)
            if inside.any():
                hits.append(t.get_text())
    return hits


def test_no_label_is_struck_through_by_a_line():
    from npunet.models import EncoderUNet, UNet3Plus, UNetPlusPlus
    from npunet.viz import draw_architecture
    for model, depth in ((UNetPlusPlus(3, 1, deep_supervision=True), 1), (UNet3Plus(3, 1, deep_supervision=True), 1),
                         (EncoderUNet("mobilenet_v2"), 3)):
        fig = draw_architecture(model, (1, 3, 256, 256), depth=depth)
        assert _struck(fig) == [], (type(model).__name__, _struck(fig))
        plt.close("all")
    fig = draw_unet_figure(UNet(), (1, 1, 572, 572))                   # the paper's Fig. 1: sizes inside the bars
    assert _struck(fig) == [], _struck(fig)
    plt.close("all")


def test_the_encoder_unet_figure_fits_the_readme_and_tells_encoder_from_decoder():
    from npunet.models import EncoderUNet
    from npunet.viz import draw_architecture
    fig = draw_architecture(EncoderUNet("mobilenet_v2"), (1, 3, 256, 256), depth=3)
    assert fig.get_size_inches()[0] <= 13
    colours = {p.get_facecolor() for p in fig.axes[0].patches if hasattr(p, "get_width")}
    assert len(colours) >= 4                                                      # input, encoder, decoder, head
    labels = _legend(fig)
    assert any("encoder block" in t for t in labels) and any("decoder block" in t for t in labels)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "head" in texts and "0" not in texts
    plt.close("all")
