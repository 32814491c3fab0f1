"""``npunet demo``: the classroom demo.  Prints the 572 U-Net shape trace, trains a small U-Net on
synthetic touching cells (or the DSB 2018 nuclei image) with the U-Net weight map, evaluates on
held-out images and writes figures."""
import os
import time

from .. import models
from .config import defaults
from .runs import PRESETS, build_run
from .train import evaluate, predict_masks


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


def demo_config(model="unet", data="synthetic", epochs=20, seed=0, out="npunet_demo_out", weight_map=True,
                batch_size=8, lr=3e-3, n_train=48):
    """The demo as a training config (the same dict ``npunet train --config`` reads)."""
    cfg = defaults()
    arch, model_config = PRESETS[model]
    cfg.update(model=arch, model_config=dict(model_config), data=data, epochs=epochs, seed=seed, out=out,
               weight_map=weight_map, batch_size=batch_size, lr=lr, n_train=n_train, n_val=8, size=128,
               loss="ce", optimizer="adam", schedule="cosine", augment={"flips": True, "elastic_p": 0.3, "gray": True})
    return cfg


def run_demo(model="unet", data="synthetic", epochs=20, seed=0, out="npunet_demo_out", weight_map=True,
             batch_size=8, lr=3e-3, n_train=48, progress=True, log=print, trace=True):
    """Trains the demo config through the same code as ``npunet train``.
    Returns dict(metrics, history, seconds, out, model, val=(images, masks, labels) held out).
    On a machine whose kernel cache is cold, a helper process compiles the training kernels while this
    one builds the data (npunet.app.prefetch; NPUNET_PREFETCH=0 turns it off)."""
    from ..io import _held, lock_folder, unlock_folder
    from .prefetch import start
    check_out_dir(out)
    start("demo")
    mine = os.path.realpath(out) not in _held
    lock_folder(out, "demo folder", log=log)  # one process per output folder
    try:
        return _run_demo(model, data, epochs, seed, out, weight_map, batch_size, lr, n_train, progress, log, trace)
    finally:
        if mine:
            unlock_folder(out)


def _run_demo(model, data, epochs, seed, out, weight_map, batch_size, lr, n_train, progress, log, trace):
    t0 = time.perf_counter()
    if trace:
        from ..models.summary import summary
        log("The U-Net of the 2015 paper on its 572x572 input tile (shapes only, nothing computed):")
        summary(models.UNet(), (1, 1, 572, 572), print_fn=log)
        log("")
    cfg = demo_config(model, data, epochs, seed, out, weight_map, min(batch_size, n_train), lr, n_train)
    trainer = build_run(cfg, progress=progress, log=log)
    net, xtr = trainer.model, trainer.loader.dataset.images
    xte, mte, lte = trainer.val_data
    log(f"Training {type(net).__name__} ({net.num_parameters():,} parameters) on {len(xtr)} {data} images "
        f"{xtr.shape[2]}x{xtr.shape[3]}, weight map {'on' if trainer.use_weight_map else 'off'}, {epochs} epochs")
    trainer.fit(epochs)
    r = evaluate(net, xte, mte, lte)
    log(f"Held-out ({len(xte)} images): Dice {r['dice']:.3f}  IoU {r['iou']:.3f}  precision {r['precision']:.3f}  "
        f"recall {r['recall']:.3f}  F1 {r['f1']:.3f}  pixel accuracy {r['accuracy']:.3f}  "
        f"instance F1@0.5 {r['instance_f1']:.3f}")
    from ..viz import plot_history, plot_predictions
    pred = predict_masks(net, xte)
    f1 = plot_history(trainer.history, os.path.join(out, "training_curves.png"))
    f2 = plot_predictions(xte[:4], mte[:4], pred[:4], os.path.join(out, "predictions.png"))
    seconds = time.perf_counter() - t0
    log(f"Figures: {f1}, {f2}; checkpoint: {trainer.checkpoint_path}; total {seconds:.0f} s")
    return dict(metrics=r, history=trainer.history, seconds=seconds, out=out, model=net, val=(xte, mte, lte))
