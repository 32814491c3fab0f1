"""``npunet demo``: the classroom demo.  Prints the 572 U-Net shape trace, trains a small U-Net on
synthetic touching cells (or the DSB 2018 nuclei image) with the U-Net weight map, evaluates on
held-out images and writes figures."""
import os
import time

import numpy as np

from . import init, losses, models, optim
from .data import Augment, DataLoader, SegmentationDataset, make_cells, nuclei_split
from .train import Trainer, evaluate, predict_masks

PRESETS = {
    "unet": lambda: models.UNet(1, 2, base_channels=16, depth=3, padding="same", batch_norm=True),
    "unetpp": lambda: models.UNetPlusPlus(1, 2, filters=(8, 16, 32, 64), depth=3, deep_supervision=True),
    "unet3plus": lambda: models.UNet3Plus(1, 2, filters=(8, 16, 32, 64, 128), cat_channels=8, deep_supervision=True),
}


def check_out_dir(out):
    """Create the output folder or fail before any training starts."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".npunet-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise SystemExit(f"npunet demo: cannot write to the output folder '{out}' ({e.strerror}); "
                         f"choose another with --out") from None


def demo_data(kind, seed, n_train=48, n_test=8, size=128):
    if kind == "nuclei":
        split = nuclei_split(tile=128, seed=seed)
        return split["train"], split["test"]
    imgs, labels, masks = make_cells(n_train + n_test, size=size, seed=seed)
    return ((imgs[:n_train], labels[:n_train], masks[:n_train]), (imgs[n_train:], labels[n_train:], masks[n_train:]))


def run_demo(model="unet", data="synthetic", epochs=6, seed=0, out="npunet_demo_out", weight_map=True,
             batch_size=8, lr=3e-3, n_train=48, progress=True, log=print, trace=True):
    """Returns dict(metrics, history, seconds, out)."""
    t0 = time.perf_counter()
    check_out_dir(out)
    if trace:
        from .models.summary import summary
        log("The U-Net of the 2015 paper on its 572x572 input tile (shapes only, nothing computed):")
        summary(models.UNet(), (1, 1, 572, 572), print_fn=log)
        log("")
    init.manual_seed(seed)
    (xtr, ltr, mtr), (xte, lte, mte) = demo_data(data, seed, n_train=n_train)
    net = PRESETS[model]()
    log(f"Training {type(net).__name__} ({net.num_parameters():,} parameters) on {len(xtr)} {data} images "
        f"{xtr.shape[2]}x{xtr.shape[3]}, weight map {'on' if weight_map else 'off'}, {epochs} epochs")
    ds = SegmentationDataset(xtr, mtr, ltr, weight_map=weight_map)
    loader = DataLoader(ds, batch_size=batch_size, augment=Augment(elastic_p=0.3), seed=seed)
    opt = optim.Adam(net.parameters(), lr=lr)
    sched = optim.CosineAnnealingLR(opt, T_max=epochs)
    trainer = Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=sched, val_data=(xte, mte, lte),
                      use_weight_map=weight_map, checkpoint_path=os.path.join(out, "checkpoint.npz"),
                      config=dict(model=model, data=data, epochs=epochs, seed=seed, weight_map=weight_map,
                                  batch_size=batch_size, lr=lr), progress=progress, log=log)
    trainer.fit(epochs)
    r = evaluate(net, xte, mte, lte)
    log(f"Held-out ({len(xte)} images): Dice {r['dice']:.3f}  IoU {r['iou']:.3f}  precision {r['precision']:.3f}  "
        f"recall {r['recall']:.3f}  F1 {r['f1']:.3f}  pixel accuracy {r['accuracy']:.3f}  "
        f"instance F1@0.5 {r['instance_f1']:.3f}")
    from .viz import plot_history, plot_predictions
    pred = predict_masks(net, xte)
    f1 = plot_history(trainer.history, os.path.join(out, "training_curves.png"))
    f2 = plot_predictions(xte[:4], mte[:4], pred[:4], os.path.join(out, "predictions.png"))
    seconds = time.perf_counter() - t0
    log(f"Figures: {f1}, {f2}; checkpoint: {trainer.checkpoint_path}; total {seconds:.0f} s")
    return dict(metrics=r, history=trainer.history, seconds=seconds, out=out, model=net)
