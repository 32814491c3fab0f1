import os

import matplotlib.pyplot as plt
import numpy as np


_NOTEBOOK_BACKENDS = ("inline", "nbagg", "ipympl", "widget")
KEEP_OPEN = False     # set by a lesson run with --step on a screen: its figures are shown at the step's end


def finish(fig):
    """Done with a figure: close it in a script (figures would pile up), but leave it open under a
    notebook backend (Jupyter, VS Code), which shows the open figures of a cell when the cell ends,
    and in a lesson stepped through on a screen (``--step``), which shows them before the next step."""
    import matplotlib
    if not KEEP_OPEN and not any(k in matplotlib.get_backend().lower() for k in _NOTEBOOK_BACKENDS):
        plt.close(fig)


def save_figure(fig, path, dpi=110):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finish(fig)
    return path


def plot_history(history, path):
    """Training loss per step and validation Dice / IoU / instance F1 per epoch."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(history["step_loss"], lw=0.8)
    ax[0].set_xlabel("step"); ax[0].set_ylabel("training loss"); ax[0].set_yscale("log")
    for k, lab in (("val_dice", "Dice"), ("val_iou", "IoU"), ("val_instance_f1", "instance F1@0.5")):
        if history.get(k):
            ax[1].plot(history["epoch"], history[k], marker="o", label=lab)
    ax[1].set_xlabel("epoch"); ax[1].set_ylim(0, 1); ax[1].legend(); ax[1].set_title("held-out")
    return save_figure(fig, path)


def overlay(image, truth, pred):
    """RGB: gray image, true positives white-ish green, false positives red, false negatives blue."""
    g = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    rgb = np.stack([g, g, g], axis=-1) * 0.6
    tp, fp, fn = (pred > 0) & (truth > 0), (pred > 0) & (truth == 0), (pred == 0) & (truth > 0)
    rgb[tp] = rgb[tp] * 0.4 + np.array([0.2, 0.8, 0.2]) * 0.6
    rgb[fp] = [1.0, 0.15, 0.15]
    rgb[fn] = [0.2, 0.4, 1.0]
    return rgb


def plot_predictions(images, truths, preds, path, titles=("input", "truth", "prediction", "errors (FP red, FN blue)")):
    n = len(images)
    fig, ax = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    for i in range(n):
        img = images[i][0] if images[i].ndim == 3 else images[i]
        ax[i, 0].imshow(img, cmap="gray")
        ax[i, 1].imshow(truths[i], cmap="gray")
        ax[i, 2].imshow(preds[i], cmap="gray")
        ax[i, 3].imshow(overlay(img, truths[i], preds[i]))
        for j in range(4):
            ax[i, j].axis("off")
            if i == 0:
                ax[i, j].set_title(titles[j])
    from matplotlib.patches import Patch          # every colour of the error overlay, named once
    fig.legend(handles=[Patch(color=c, label=lab) for c, lab in (
        ((0.2, 0.8, 0.2), "true positive: predicted and true"), ((1.0, 0.15, 0.15), "false positive: predicted, not true"),
        ((0.2, 0.4, 1.0), "false negative: true, missed"), ((0.35, 0.35, 0.35), "true negative: the image, dimmed"))],
        loc="lower center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.02 / max(n, 1)))
    return save_figure(fig, path)
