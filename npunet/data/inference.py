"""Prediction on your own images: ``npunet.predict`` (arrays or files) and the files written by
``npunet predict`` (masks like the training masks, overlays, probabilities)."""
import glob
import os

import numpy as np

from ..backends.reference import sigmoid  # the stable one: no overflow at logits of -1000
from .files import IMAGE_EXTS, DataError, from_classes, read_image
from .normalize import normalize


def fit_range(a, lo, hi):
    """Map the image's own [min, max] onto [lo, hi], the training images' typical range: the same
    picture gives the same input whatever the file's scale (0..255 PNG, 0..1 float .npy)."""
    a = np.asarray(a, np.float64)
    amin, amax = float(a.min()), float(a.max())
    scale = max(abs(amin), abs(amax), 1e-300)
    if not np.isfinite(amax - amin):  # values near the float64 limit (±1.7e308): scale before subtracting
        a, amin, amax = a / scale, amin / scale, amax / scale
    span = amax - amin
    return lo + (a - amin) * ((hi - lo) / span) if span > 0 else np.full_like(a, lo)


def _fit_channels(x, C, notes, where=""):
    """A (c, H, W) image for a C-channel model: RGB averaged to grey, grey repeated to C channels."""
    c = x.shape[0]
    if c == C:
        return x
    if C == 1 and c in (3, 4):
        notes.add("RGB averaged to grey for a 1-channel model")
        return x[:3].mean(axis=0, keepdims=True)
    if c == 1:
        notes.add(f"grey image repeated to the model's {C} channels")
        return np.repeat(x, C, axis=0)
    raise DataError(f"{where or 'image'}: {c} channel(s); the model takes {C}")


def _as_images(images, C, notes):
    """images -> (list of raw (C, H, W) float32, single, names)."""
    if isinstance(images, (str, os.PathLike)):
        pages = read_image(str(images), notes)
        return [_fit_channels(p, C, notes, str(images)) for p in pages], len(pages) == 1, None
    if isinstance(images, np.ndarray):
        a = images
        if a.ndim == 2:
            return [_fit_channels(a[None].astype(np.float32), C, notes)], True, None
        if a.ndim == 3:
            return [_fit_channels(np.asarray(a, np.float32), C, notes)], True, None
        if a.ndim == 4:
            return [_fit_channels(np.asarray(im, np.float32), C, notes) for im in a], False, None
        raise DataError(f"npunet.predict: images of shape {a.shape}; expected (H, W), (C, H, W) or (N, C, H, W)")
    out = []
    for im in images:
        r, _, _ = _as_images(im, C, notes)
        out.extend(r)
    return out, False, None


def _probabilities(model, y):
    if y.shape[0] == 1:
        return y if getattr(model, "cgm", False) else sigmoid(y)
    e = np.exp(y - y.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def predict_logits(model, raw_images):
    """Logits (K, H, W) for each raw image (C, H, W), after the model's recorded normalisation."""
    from .tiling import predict_images
    norm = getattr(model, "normalization", None)
    return predict_images(model, [normalize(im, norm) if norm is not None else im for im in raw_images], batch=1)


def predict(model_or_checkpoint, images, probabilities=False, values=False):
    """Segment raw images with a model, as ``npunet predict`` does (``npunet.predict`` also takes a checkpoint path).

    images: (H, W), (C, H, W), (N, C, H, W), a list of such arrays (any sizes), or image file paths;
    raw values like the training data (the checkpoint's normalisation is applied here).  RGB into a
    1-channel model is averaged to grey.  Large images and valid-padding models are tiled.
    Returns class masks (H, W) uint8 for one image, else (N, H, W) (a list when sizes differ);
    values=True maps the classes back to the training masks' values (a PIL image each);
    probabilities=True returns (masks, probabilities) with float32 (K, H, W) per image (softmax; the
    sigmoid (1, H, W) for a 1-class model).
    """
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        # reading a checkpoint needs the training config's schema, which lives in the app above this
        # module: the top-level npunet.predict resolves a path first; here a path is a plain error
        raise TypeError(f"npunet.data.inference.predict takes a model; for the checkpoint "
                        f"'{os.fspath(model_or_checkpoint)}' call npunet.predict (it loads the checkpoint first)")
    model = model_or_checkpoint
    notes = set()
    raw, single, _ = _as_images(images, model.in_channels, notes)
    masks, probs = [], []
    for y in predict_logits(model, raw):
        if y.shape[0] == 1:
            p = _probabilities(model, y)
            masks.append((p[0] > 0.5).astype(np.uint8))
        else:
            masks.append(np.argmax(y, axis=0).astype(np.uint8))
        if probabilities:
            probs.append(_probabilities(model, y).astype(np.float32))
    if values:
        masks = [from_classes(m, getattr(model, "mask_mapping", None)) for m in masks]
    elif single:
        masks = masks[0]
    elif len({m.shape for m in masks}) == 1:
        masks = np.stack(masks)
    if probabilities:
        return masks, probs[0] if single else probs
    return masks


def expand_inputs(paths):
    """Files of --input: files, folders (their image files, sorted) and globs; one error for a miss."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            fs = [os.path.join(p, f) for f in sorted(os.listdir(p))
                  if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".")]
            if not fs:
                raise DataError(f"'{p}': no image files in the folder (npunet reads {' '.join(IMAGE_EXTS)})")
            out += fs
        elif os.path.isfile(p):
            out.append(p)
        elif any(ch in p for ch in "*?["):
            fs = sorted(f for f in glob.glob(p) if os.path.isfile(f))
            if not fs:
                raise DataError(f"'{p}': the pattern matches no file")
            out += fs
        else:
            raise DataError(f"'{p}': no such file or folder")
    return out


_COLORS = np.array([[255, 60, 60], [60, 220, 60], [60, 120, 255], [255, 200, 0], [255, 0, 255], [0, 220, 220],
                    [255, 128, 0], [160, 80, 255]], np.uint8)


def overlay(raw, classes):
    """The image (C, H, W) scaled to 0..255 for display, with each class's outline drawn in a colour:
    (H, W, 3) uint8."""
    x = raw[:3] if raw.shape[0] >= 3 else np.repeat(raw[:1], 3, axis=0)
    lo, hi = float(x.min()), float(x.max())
    rgb = ((x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)).transpose(1, 2, 0).astype(np.uint8)
    c = np.asarray(classes)
    edge = np.zeros(c.shape, bool)
    edge[1:] |= c[1:] != c[:-1]
    edge[:-1] |= c[:-1] != c[1:]
    edge[:, 1:] |= c[:, 1:] != c[:, :-1]
    edge[:, :-1] |= c[:, :-1] != c[:, 1:]
    edge &= c > 0
    rgb[edge] = _COLORS[(c[edge].astype(np.int64) - 1) % len(_COLORS)]
    return rgb


def predict_files(model, files, out, overlay_=False, probabilities=False, force=False, progress=True, log=print,
                  fallback_range=None):
    """Write ``out/<stem>.png`` (and ``<stem>_overlay.png``, ``<stem>.npy``) for every file; nothing is
    overwritten without force.  Returns the list of written mask paths."""
    from PIL import Image
    from tqdm.auto import tqdm
    if out.lower().endswith(IMAGE_EXTS) and not os.path.isdir(out):
        raise DataError(f"--out '{out}': is the folder the masks are written to (<stem>.png each), not a file name")
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"--out '{out}': exists and is not a folder")
    stems = {}
    for f in files:
        s = os.path.splitext(os.path.basename(f))[0]
        if s in stems:
            raise DataError(f"'{f}' and '{stems[s]}' would both write '{s}.png' into '{out}'; predict them into "
                            f"different --out folders")
        stems[s] = f
    targets = []
    for s in stems:
        targets.append(os.path.join(out, s + ".png"))
        if overlay_:
            targets.append(os.path.join(out, s + "_overlay.png"))
        if probabilities:
            targets.append(os.path.join(out, s + ".npy"))
    for t in targets:  # never an input replaced by an output, not even with --force
        if os.path.exists(t) and any(os.path.exists(f) and os.path.samefile(t, f) for f in files):
            raise DataError(f"--out '{out}' would replace the input '{t}' with its prediction; choose another --out")
    exist = [t for t in targets if os.path.exists(t)]
    if exist and not force:
        raise DataError(f"'{out}' already holds {len(exist)} of the outputs ({', '.join(map(os.path.basename, exist[:3]))}"
                        f"{' ...' if len(exist) > 3 else ''}); give --force to replace them, or another --out")
    os.makedirs(out, exist_ok=True)
    notes, written, fg = set(), [], []
    mapping = getattr(model, "mask_mapping", None)
    for f in tqdm(files, desc="predict", unit="image", disable=not progress, dynamic_ncols=True):
        pages = read_image(f, notes)
        stem = os.path.splitext(os.path.basename(f))[0]
        for k, raw in enumerate(pages):
            name = stem if len(pages) == 1 else f"{stem}_page{k + 1}"
            x = _fit_channels(raw, model.in_channels, notes, f)
            if fallback_range is not None:  # an old checkpoint without a normalisation record
                x = fit_range(x, *fallback_range).astype(np.float32)
            y = predict_logits(model, [x])[0]
            p = _probabilities(model, y)
            cls = (p[0] > 0.5).astype(np.uint8) if y.shape[0] == 1 else np.argmax(y, axis=0).astype(np.uint8)
            path = os.path.join(out, name + ".png")
            from_classes(cls, mapping).save(path)
            written.append(path)
            fg.append(float((cls > 0).mean()))
            if overlay_:
                Image.fromarray(overlay(raw, cls)).save(os.path.join(out, name + "_overlay.png"))
            if probabilities:
                np.save(os.path.join(out, name + ".npy"), p.astype(np.float32))
    if log:
        for n in sorted(notes):
            log(f"predict: {n}")
        log(f"predict: {len(written)} mask(s) written to '{out}' (foreground {100 * np.mean(fg):.1f}% on average)"
            + (", with overlays" if overlay_ else "") + (", with probabilities (.npy)" if probabilities else ""))
    return written
