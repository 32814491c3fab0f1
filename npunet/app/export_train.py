"""The text of the distributed PyTorch training script and the README that ``npunet export`` writes
(templates; npunet itself never runs them).  RECIPE_LITERAL becomes the run's recipe."""

TRAIN_DDP = r'''"""Continue training the exported model in PyTorch, on one process or many.

    torchrun --nproc_per_node 2 train_ddp.py --data DATA_DIR [--epochs E] [--steps N] [--out RUN]

DATA_DIR holds images/ and masks/ with the same file names (.png, .tif, .jpg or .npy); a mask pixel > 0
is foreground.  Each image's own [min, max] is mapped onto the npunet run's input range, as
``npunet predict`` does.  CPU processes talk over gloo, GPUs (one per process) over nccl; the model is
wrapped in DistributedDataParallel and each process reads its share of the images through a
DistributedSampler, so the global batch is RECIPE["batch_size"] as in the npunet run.
Training starts from weights.safetensors (the npunet model at the hand-over) and writes RUN/checkpoint.pt
after every epoch and at the end (atomically; --resume continues from it).

The recipe below is the npunet run's: loss, optimiser, learning rate, schedule, batch size, augmentation
(flips and rotations, gray values, crop; npunet's elastic deformation is not ported, nor the U-Net
weight map, which needs instance labels this folder layout does not have).
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import build_model  # noqa: E402

RECIPE = RECIPE_LITERAL

EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")


# ---------------------------------------------------------------- data: DATA_DIR/images + DATA_DIR/masks

def read_array(path, channels=None):
    if path.endswith(".npy"):
        a = np.load(path)
    else:
        from PIL import Image
        img = Image.open(path)
        if channels is not None:
            img = img.convert("L" if channels == 1 else "RGB")
        a = np.asarray(img)
    return np.asarray(a, np.float32)


class FolderDataset(Dataset):
    """(image (C, H, W) float32, mask (H, W) int64 in {0, 1}) pairs from images/ and masks/."""

    def __init__(self, root, augment, seed):
        self.root, self.augment, self.seed = root, augment, seed
        names = sorted(f for f in os.listdir(os.path.join(root, "images")) if f.lower().endswith(EXTENSIONS))
        masks = {os.path.splitext(f)[0]: f for f in os.listdir(os.path.join(root, "masks"))
                 if f.lower().endswith(EXTENSIONS)}
        missing = [f for f in names if os.path.splitext(f)[0] not in masks]
        if not names or missing:
            raise SystemExit(f"train_ddp.py: '{root}' needs images/ and masks/ with the same file names; "
                             + (f"no mask for {missing[:3]}" if missing else "no images found"))
        self.pairs = [(f, masks[os.path.splitext(f)[0]]) for f in names]
        self.epoch = 0

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        fi, fm = self.pairs[i]
        C = RECIPE["in_channels"]
        x = read_array(os.path.join(self.root, "images", fi), C)
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1) if x.shape[-1] == C and x.shape[0] != C else x
        lo, hi = RECIPE["input_range"]
        span = float(x.max() - x.min())
        x = lo + (x - x.min()) * ((hi - lo) / span) if span > 0 else np.full_like(x, lo)
        m = read_array(os.path.join(self.root, "masks", fm))
        m = (m.max(axis=-1) if m.ndim == 3 else m) > 0
        rng = np.random.default_rng([self.seed, self.epoch, i])   # a fresh draw per (epoch, image)
        x, m = self.augment(x, m[None], rng)
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(m[0].astype(np.int64))


def make_augment(cfg):
    """npunet's augmentation: random crop, the 8 flips/rotations, random gain, bias and gamma."""
    def augment(x, m, rng):
        if cfg.get("crop"):
            s = cfg["crop"]
            y0, x0 = rng.integers(x.shape[1] - s + 1), rng.integers(x.shape[2] - s + 1)
            x, m = x[:, y0:y0 + s, x0:x0 + s], m[:, y0:y0 + s, x0:x0 + s]
        if cfg.get("flips"):
            k = int(rng.integers(4))
            x, m = np.rot90(x, k, axes=(1, 2)), np.rot90(m, k, axes=(1, 2))
            if rng.random() < 0.5:
                x, m = x[:, :, ::-1], m[:, :, ::-1]
        if cfg.get("gray"):
            g, b, gm = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1), rng.uniform(0.8, 1.25)
            lo = x.min()
            t = (x - lo) / max(float(x.max() - lo), 1e-6)
            x = ((t ** gm) * (x.max() - lo) + lo) * g + b
        return np.ascontiguousarray(x), np.ascontiguousarray(m)
    return augment


# ---------------------------------------------------------------- the losses (as npunet.losses defines them)

def region_scores(z, y):
    p, y = torch.sigmoid(z), y.to(z.dtype)
    ax = tuple(range(2, z.dim()))
    return (p * y).sum(ax), p.sum(ax), y.sum(ax)


def dice_loss(z, y, smooth=1.0):
    I, Sp, Sy = region_scores(z, y)
    return 1 - ((2 * I + smooth) / (Sp + Sy + smooth)).mean()


def iou_loss(z, y, smooth=1.0):
    I, Sp, Sy = region_scores(z, y)
    return 1 - ((I + smooth) / (Sp + Sy - I + smooth)).mean()


def focal_loss(z, y, alpha=0.25, gamma=2.0):
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p = torch.sigmoid(z)
    pt = p * y + (1 - p) * (1 - y)
    at = alpha * y + (1 - alpha) * (1 - y)
    return (at * (1 - pt) ** gamma * ce).mean()


def ms_ssim_loss(z, y, scales=3, win=11, sigma=1.5):
    """1 - MS-SSIM(sigmoid(z), y): valid Gaussian filtering, 2x2 average pooling between scales."""
    w = torch.tensor((0.0448, 0.2856, 0.3001, 0.2363, 0.1333)[:scales], dtype=z.dtype, device=z.device)
    w = w / w.sum()
    k = torch.arange(win, dtype=z.dtype, device=z.device) - win // 2
    g = torch.exp(-k ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    C = z.shape[1]
    gh, gw = g.view(1, 1, win, 1).repeat(C, 1, 1, 1), g.view(1, 1, 1, win).repeat(C, 1, 1, 1)

    def filt(a):
        return F.conv2d(F.conv2d(a, gh, groups=C), gw, groups=C)

    X, Y = torch.sigmoid(z), y.to(z.dtype)
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for s in range(scales):
        mx, my = filt(X), filt(Y)
        sxx, syy, sxy = filt(X * X) - mx * mx, filt(Y * Y) - my * my, filt(X * Y) - mx * my
        cs = (2 * sxy + C2) / (sxx + syy + C2)
        if s == scales - 1:
            vals.append(((2 * mx * my + C1) / (mx * mx + my * my + C1) * cs).mean((2, 3)))
        else:
            vals.append(cs.mean((2, 3)))
            pad = (X.shape[2] % 2, X.shape[3] % 2)
            X, Y = F.avg_pool2d(X, 2, padding=pad), F.avg_pool2d(Y, 2, padding=pad)
    V = torch.relu(torch.stack(vals))                      # (scales, N, C)
    return 1 - torch.prod(V ** w[:, None, None], dim=0).mean()


LOSSES = {
    "ce": lambda z, y: F.cross_entropy(z, y),
    "bce": lambda z, y: F.binary_cross_entropy_with_logits(z, y),
    "dice": dice_loss,
    "iou": iou_loss,
    "focal": focal_loss,
    "bce_dice": lambda z, y: F.binary_cross_entropy_with_logits(z, y) + dice_loss(z, y),
    "focal_msssim_iou": lambda z, y: focal_loss(z, y) + ms_ssim_loss(z, y) + iou_loss(z, y),
}


def center_crop(a, H, W):
    h, w = a.shape[-2:]
    t, l = (h - H) // 2, (w - W) // 2
    return a[..., t:t + H, l:l + W]


def compute_loss(out, mask):
    """The run's loss; deep supervision: the mean over the heads; CGM: + BCE of the classifier on
    'the mask is not empty'.  mask: (N, H, W) int64."""
    cls = None
    if isinstance(out, tuple):                              # (seg, cls) from a CGM model in training
        out, cls = out
    heads = out if isinstance(out, list) else [out]
    fn = LOSSES[RECIPE["loss"]]
    total = 0
    for z in heads:
        y = center_crop(mask, *z.shape[-2:])                # a valid-conv U-Net's output is smaller
        total = total + fn(z, y if RECIPE["loss"] == "ce" else y[:, None].to(z.dtype))
    total = total / len(heads)
    if cls is not None:
        present = (mask.flatten(1).amax(1) > 0).to(cls.dtype)
        total = total + F.binary_cross_entropy(cls, torch.stack([1 - present, present], 1))
    return total


# ---------------------------------------------------------------- training

def setup():
    if "RANK" not in os.environ:                            # plain `python train_ddp.py`: one process
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", "29511"))
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cpu")


def save_checkpoint(path, model, opt, sched, epoch, step):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(), "epoch": epoch, "step": step,
                "recipe": RECIPE}, tmp)
    os.replace(tmp, path)                                   # a crash mid-save keeps the previous file


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with images/ and masks/")
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--steps", type=int, help="stop after this many optimiser steps in all (then --epochs only sets "
                                             "the schedule's length)")
    p.add_argument("--out", default=os.path.join(HERE, "run"), help="folder for checkpoint.pt")
    p.add_argument("--weights", default=os.path.join(HERE, "weights.safetensors"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (a run stopped by "
                                                         "--steps mid-epoch starts that epoch again)")
    p.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics over all processes' batches")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    args = p.parse_args()

    device = setup()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(RECIPE["seed"])
    model = build_model()
    model.load_state_dict(load_file(args.weights), strict=True)   # the npunet weights at the hand-over
    model.to(device)
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # SMP's EfficientNet keeps a head conv its U-Net never runs: DDP must be told some parameters get no gradient
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=RECIPE["architecture"] == "EncoderUNet")

    ds = FolderDataset(args.data, make_augment(RECIPE["augment"]), RECIPE["seed"])
    per_rank = max(1, RECIPE["batch_size"] // world)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=RECIPE["seed"])
    loader = DataLoader(ds, batch_size=per_rank, sampler=sampler, num_workers=args.workers, drop_last=len(ds) >= per_rank * world)

    params = model.parameters()
    if RECIPE["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    else:
        opt = torch.optim.SGD(params, lr=RECIPE["lr"], momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
    sched = {"cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs),
             "step": lambda: torch.optim.lr_scheduler.StepLR(opt, max(1, args.epochs // 3), 0.1),
             "none": lambda: None}[RECIPE["schedule"]]()

    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    epoch, step = 0, 0
    if args.resume and os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        epoch, step = state["epoch"], state["step"]
    if rank == 0:
        print(f"{type(model).__name__} on {world} process(es) ({device.type}, {dist.get_backend()}), "
              f"{len(ds)} images, {per_rank} per process and step, loss {RECIPE['loss']!r}", flush=True)
        left = ["the U-Net weight map"] * RECIPE["weight_map"] + ["elastic deformation"] * (RECIPE["augment"]["elastic_p"] > 0)
        if left:
            print(f"note: the npunet run also used {' and '.join(left)}, which this script does not do", flush=True)

    done = False
    while (epoch < args.epochs if args.steps is None else step < args.steps) and not done:
        sampler.set_epoch(epoch)
        ds.epoch = epoch
        ddp.train()
        for x, m in loader:
            x, m = x.to(device), m.to(device)
            loss = compute_loss(ddp(x), m)
            opt.zero_grad(set_to_none=True)
            loss.backward()                                 # DDP averages the gradients over the processes
            opt.step()
            step += 1
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            if rank == 0:
                print(f"epoch {epoch + 1} step {step}: loss {mean.item() / world:.5f}", flush=True)
            if args.steps is not None and step >= args.steps:
                done = True
                break
        if not done:
            epoch += 1
            if sched is not None:
                sched.step()
        if rank == 0:
            save_checkpoint(ckpt, model, opt, sched, epoch, step)
    if rank == 0:
        print(f"saved {ckpt} (epoch {epoch}, step {step})", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''

README = '''# {name} exported from npunet

Files (written by `npunet export`):

- `model.py`: the model in plain PyTorch (imports only torch{smp}); `build_model()` returns it with the
  npunet run's constructor arguments (`CONFIG`). Layer names are npunet's, so the state_dict keys are too.
- `weights.safetensors`: the trained parameters and buffers (BatchNorm running statistics included).
- `train_ddp.py`: continues training with the run's recipe (loss `{loss}`, {optimizer} at lr {lr}, schedule
  `{schedule}`, {epochs} epochs, global batch {batch_size}) on many processes.

## Load the model

```python
import torch
from safetensors.torch import load_file
from model import build_model

model = build_model()
model.load_state_dict(load_file("weights.safetensors"), strict=True)
model.eval()
with torch.no_grad():
    y = model(torch.randn(1, {channels}, 128, 128))   # the same outputs as npunet's model
```

## Continue training

A data folder holds `images/` and `masks/` with matching file names (PNG, TIFF, JPEG or .npy; a mask
pixel > 0 is foreground):

```
pip install torch safetensors pillow{smp_pip}
torchrun --nproc_per_node 2 {dir}/train_ddp.py --data DATA_DIR --epochs 10      # 2 CPU processes (gloo)
torchrun --nproc_per_node 4 {dir}/train_ddp.py --data DATA_DIR                  # 4 GPUs (nccl), one each
```

`--steps N` stops after N optimiser steps, `--out RUN` chooses where `checkpoint.pt` goes (after every
epoch, atomically), `--resume` continues from it, `--sync-bn` computes BatchNorm statistics over all
processes. Each process reads its share of the images (DistributedSampler); gradients are averaged by
DistributedDataParallel, so the global batch is the npunet run's. npunet's elastic deformation and the
U-Net weight map (it needs instance labels) are not part of this script.
'''
