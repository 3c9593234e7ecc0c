"""Sequential inputs for dynamic bit-precision: synthetic clips from still images, or a user's own.

**The clips are synthetic.** No video data set ships with the project, so :func:`make_clips` turns
still test images (a bundle's ``test_x`` codes, or a data set's images) into short seeded "video"
clips whose neighbouring frames resemble each other, as in the paper's sequential setting:

- one source image per clip; every frame carries that image's label;
- a smooth drift of translation, rotation, scale and brightness (each a damped random walk, so the
  parameters move a little from one frame to the next and stay inside configurable bounds);
- additive noise on every frame;
- occasional occlusion events: a rectangle of constant value covers part of the image for a few
  consecutive frames (that is where a confident network becomes unsure, and where spending more
  planes should help).

Frames are resampled bilinearly (outside the source: 0, the real zero of an activation code),
rounded half up and clamped to ``[0, 2^A - 1]``: the output is integer activation codes, ready for
the golden model and the engine. numpy only (float arithmetic is used to *synthesize* the data;
the inference path that consumes it is integers only).

:func:`load_sequence` reads a user's own sequence (``.npz`` with ``frames`` [T, C, H, W] and
``labels`` [T], or a folder of per-frame ``.npy``/``.npz`` files) and checks shapes, dtypes, ranges
and labels, raising :class:`ClipError` with a one-line reason.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ClipParams", "Clips", "ClipError", "make_clips", "load_sequence", "check_codes",
           "eval_and_calibration"]


class ClipError(ValueError):
    """A malformed sequence or bad generator parameters; the message says what is wrong."""


@dataclass(frozen=True)
class ClipParams:
    """Bounds and rates of the synthetic motion (lengths in fractions of the image side).

    Every drifting parameter follows ``v <- damping*v + step*noise``, ``p <- clip(p + v, bounds)``
    per frame, starting at a random point inside ``start`` times its bounds.
    """

    shift: float = 0.04          # |translation| <= shift * side
    shift_step: float = 0.01     # per-frame velocity noise (fraction of side)
    rotate: float = 8.0          # |rotation| <= rotate degrees
    rotate_step: float = 1.0
    scale: float = 0.05          # zoom in [1 - scale, 1 + scale]
    scale_step: float = 0.005
    brightness: float = 0.2      # gain in [1 - brightness, 1 + brightness/3]
    brightness_step: float = 0.03
    damping: float = 0.85
    start: float = 0.5           # initial parameters drawn within start * bounds
    noise: float = 0.03          # Gaussian noise sigma, fraction of the code range
    occlusion_rate: float = 0.015 # probability per frame that an occlusion event starts
    occlusion_frames: tuple = (3, 8)   # an event lasts this many frames (inclusive range)
    occlusion_size: tuple = (0.3, 0.55)  # rectangle sides, fractions of the image side

    def check(self) -> "ClipParams":
        for name in ("shift", "shift_step", "rotate", "rotate_step", "scale", "scale_step",
                     "brightness", "brightness_step", "noise", "occlusion_rate"):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)
                    or v < 0):
                raise ClipError(f"clip parameter {name} must be a finite number >= 0, not {v!r}")
        if not 0 <= self.damping < 1:
            raise ClipError(f"clip parameter damping must be in [0, 1), not {self.damping!r}")
        if not 0 <= self.start <= 1:
            raise ClipError(f"clip parameter start must be in [0, 1], not {self.start!r}")
        if self.scale >= 1 or self.brightness >= 1 or self.occlusion_rate > 1:
            raise ClipError("clip parameters scale and brightness must be < 1, occlusion_rate <= 1")
        lo, hi = self.occlusion_frames
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ClipError(f"occlusion_frames must be integers 1 <= lo <= hi, not {lo, hi}")
        lo, hi = self.occlusion_size
        if not 0 < lo <= hi <= 1:
            raise ClipError(f"occlusion_size must satisfy 0 < lo <= hi <= 1, not {lo, hi}")
        return self


@dataclass
class Clips:
    """A batch of equal-length sequences.

    ``frames``: unsigned codes ``[clips, T, C, H, W]``; ``labels``: int64 ``[clips, T]``;
    ``occluded``: bool ``[clips, T]`` (synthetic occlusion events; all False for a user sequence);
    ``sources``: int64 ``[clips]`` index of each clip's source image (-1 when unknown);
    ``meta``: how they were made (``synthetic`` says whether they are generated).
    """

    frames: np.ndarray
    labels: np.ndarray
    occluded: np.ndarray
    sources: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[1])

    def flat_frames(self) -> np.ndarray:
        """All frames ``[clips*T, C, H, W]`` (clip-major), for one batched golden-model run."""
        return self.frames.reshape(-1, *self.frames.shape[2:])


def check_codes(where: str, a: np.ndarray, abits: int) -> np.ndarray:
    """Refuse non-integer arrays and codes outside ``[0, 2^A - 1]``; return ``a``."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        raise ClipError(f"{where}: frames must be integer activation codes, not "
                        f"{getattr(a, 'dtype', type(a).__name__)}")
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > (1 << abits) - 1:
            raise ClipError(f"{where}: code {lo if lo < 0 else hi} outside [0, {(1 << abits) - 1}]"
                            f" (A={abits} activation bits)")
    return a


def _walk(rng, n: int, bound: float, step: float, damping: float, start: float) -> np.ndarray:
    """A damped random walk of ``n`` values inside ``[-bound, bound]``."""
    out = np.empty(n)
    p = rng.uniform(-start, start) * bound
    v = 0.0
    for t in range(n):
        out[t] = p
        v = damping * v + step * rng.standard_normal()
        p = p + v
        if abs(p) > bound:          # reflect at the bounds and lose the outward speed
            p = np.sign(p) * bound - (p - np.sign(p) * bound)
            p = float(np.clip(p, -bound, bound))
            v = -0.5 * v
    return out


def _warp(img: np.ndarray, dx: float, dy: float, angle: float, zoom: float) -> np.ndarray:
    """Bilinear resampling of ``img`` [C, H, W] (float) under rotation/zoom about the centre and a
    translation; outside the source reads 0."""
    c, h, w = img.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    th = np.deg2rad(angle)
    cos, sin = np.cos(th), np.sin(th)
    # inverse map: output pixel -> source coordinate
    ox, oy = (xx - cx - dx) / zoom, (yy - cy - dy) / zoom
    sx = cos * ox + sin * oy + cx
    sy = -sin * ox + cos * oy + cy
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)))       # zero border: indices -1 and h / w read 0
    out = np.zeros_like(img, dtype=np.float64)
    for oy_, wy in ((0, 1 - fy), (1, fy)):
        for ox_, wx in ((0, 1 - fx), (1, fx)):
            yi = np.clip(y0 + oy_ + 1, 0, h + 1)
            xi = np.clip(x0 + ox_ + 1, 0, w + 1)
            inside = (y0 + oy_ >= -1) & (y0 + oy_ <= h) & (x0 + ox_ >= -1) & (x0 + ox_ <= w)
            out += pad[:, yi, xi] * (wy * wx * inside)
    return out


def make_clips(images: np.ndarray, labels: np.ndarray, *, n_clips: int = 100, n_frames: int = 30,
               seed: int = 0, abits: int = 8, params: ClipParams | None = None,
               sources: np.ndarray | None = None) -> Clips:
    """Synthesize ``n_clips`` clips of ``n_frames`` frames from still images (see the module doc).

    ``images``: unsigned codes ``[n, C, H, W]``; ``labels``: ``[n]``. ``sources``: the image indices
    clips may start from (default all); each clip draws one at random. Deterministic in ``seed``.
    """
    params = (params or ClipParams()).check()
    images = check_codes("images", np.asarray(images), abits)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ClipError(f"images must be [n, C, H, W] codes, not shape {images.shape}")
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
        raise ClipError(f"labels must be {images.shape[0]} integers, not {labels.dtype} "
                        f"{labels.shape}")
    for name, v in (("n_clips", n_clips), ("n_frames", n_frames)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ClipError(f"{name} must be a positive integer, not {v!r}")
    pool = np.arange(images.shape[0]) if sources is None else np.asarray(sources, np.int64)
    if pool.size == 0 or pool.min() < 0 or pool.max() >= images.shape[0]:
        raise ClipError("sources must be a non-empty set of valid image indices")
    rng = np.random.default_rng(seed)
    c, h, w = images.shape[1:]
    side = float(min(h, w))
    top = (1 << abits) - 1
    frames = np.zeros((n_clips, n_frames, c, h, w), np.uint8 if abits <= 8 else np.uint16)
    occl = np.zeros((n_clips, n_frames), bool)
    src = rng.choice(pool, size=n_clips)
    p = params
    for ci in range(n_clips):
        img = images[src[ci]].astype(np.float64)
        walk = lambda b, s: _walk(rng, n_frames, b, s, p.damping, p.start)  # noqa: E731
        dx = walk(p.shift * side, p.shift_step * side)
        dy = walk(p.shift * side, p.shift_step * side)
        ang = walk(p.rotate, p.rotate_step)
        zoom = 1.0 + walk(p.scale, p.scale_step)
        # brightness gain in [1 - b, 1 + b/3]: mostly dimming, as lighting changes do
        gain = 1.0 + np.clip(walk(p.brightness, p.brightness_step), -p.brightness, p.brightness / 3)
        t = 0
        events = []
        while t < n_frames:      # occlusion events: (start, length, y, x, hh, ww, value)
            if rng.random() < p.occlusion_rate:
                ln = int(rng.integers(p.occlusion_frames[0], p.occlusion_frames[1] + 1))
                hh = max(1, int(round(rng.uniform(*p.occlusion_size) * h)))
                ww = max(1, int(round(rng.uniform(*p.occlusion_size) * w)))
                y0 = int(rng.integers(0, h - hh + 1))
                x0 = int(rng.integers(0, w - ww + 1))
                val = float(rng.choice([0.0, top * rng.uniform(0.3, 1.0)]))
                events.append((t, ln, y0, x0, hh, ww, val))
                t += ln
            else:
                t += 1
        for t in range(n_frames):
            f = _warp(img, dx[t], dy[t], ang[t], zoom[t]) * gain[t]
            f += rng.standard_normal(f.shape) * (p.noise * top)
            for (t0, ln, y0, x0, hh, ww, val) in events:
                if t0 <= t < t0 + ln:
                    f[:, y0:y0 + hh, x0:x0 + ww] = val
                    occl[ci, t] = True
            frames[ci, t] = np.clip(np.floor(f + 0.5), 0, top).astype(frames.dtype)
    lab = np.repeat(labels[src].astype(np.int64)[:, None], n_frames, axis=1)
    meta = {"synthetic": True, "seed": int(seed), "n_clips": int(n_clips),
            "n_frames": int(n_frames), "abits": int(abits), "params": asdict(p),
            "note": "synthetic clips: smooth translation/rotation/scale/brightness drift, noise "
                    "and occlusion events applied to still images"}
    return Clips(frames=frames, labels=lab, occluded=occl, sources=src.astype(np.int64), meta=meta)


# ---- a user's own sequence -----------------------------------------------------------------------

def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _frame_array(where: str, a, input_shape: tuple) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == len(input_shape) - 1 and input_shape[0] == 1:
        a = a[None]               # [H, W] frames of a one-channel network
    if tuple(a.shape) != tuple(input_shape):
        raise ClipError(f"{where}: frame shape {tuple(a.shape)} != the network's input shape "
                        f"{tuple(input_shape)}")
    return a


def _labels_array(where: str, a, n: int, num_classes: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise ClipError(f"{where}: labels must be integers, not {a.dtype}")
    a = a.reshape(-1) if a.ndim == 2 and 1 in a.shape else a
    if a.shape != (n,):
        raise ClipError(f"{where}: {a.shape[0] if a.ndim else 0} labels for {n} frames "
                        f"(labels must be [T])")
    if n and (a.min() < 0 or a.max() >= num_classes):
        bad = int(a.min()) if a.min() < 0 else int(a.max())
        raise ClipError(f"{where}: label {bad} outside [0, {num_classes - 1}]")
    return a.astype(np.int64)


def _read_folder_labels(folder: Path, n: int, num_classes: int):
    for name in ("labels.npy", "labels.txt", "labels.csv"):
        p = folder / name
        if p.is_file():
            if p.suffix == ".npy":
                a = np.load(p, allow_pickle=False)
            else:
                try:
                    toks = p.read_text().replace(",", " ").split()
                    a = np.array([int(t) for t in toks], np.int64)
                except ValueError as e:
                    raise ClipError(f"{p}: labels must be integers ({e})") from None
            return _labels_array(str(p), a, n, num_classes)
    return None


def load_sequence(path, *, input_shape: tuple, abits: int, num_classes: int) -> Clips:
    """Read a user's sequence as one clip.

    Accepted layouts:

    - an ``.npz`` with ``frames`` ``[T, C, H, W]`` (``[T, H, W]`` for one channel) integer codes
      and ``labels`` ``[T]``;
    - a folder of frame files in natural name order: ``*.npy`` (one frame ``[C, H, W]`` each) with
      the labels in ``labels.npy`` / ``labels.txt`` / ``labels.csv`` (one integer per frame), or
      ``*.npz`` each holding ``frame`` and ``label``.

    Codes must lie in ``[0, 2^A - 1]``; labels in ``[0, num_classes - 1]``.
    """
    path = Path(path)
    if not path.exists():
        raise ClipError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise ClipError(f"{path}: a sequence file must be an .npz with 'frames' and 'labels'")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("frames", "labels") if k not in z.files]
                if missing:
                    raise ClipError(f"{path}: missing array {missing[0]!r} (has {sorted(z.files)})")
                frames, labels = z["frames"], z["labels"]
        except (OSError, ValueError) as e:
            if isinstance(e, ClipError):
                raise
            raise ClipError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
        frames = np.asarray(frames)
        if frames.ndim == len(input_shape) and input_shape[0] == 1:
            frames = frames[:, None]
        if frames.ndim != 4 or tuple(frames.shape[1:]) != tuple(input_shape):
            raise ClipError(f"{path}: frames shape {tuple(frames.shape)} != (T, "
                            f"{', '.join(map(str, input_shape))})")
        check_codes(f"{path}: frames", frames, abits)
        labels = _labels_array(f"{path}", labels, frames.shape[0], num_classes)
    else:
        files = sorted([p for p in path.iterdir() if p.suffix in (".npy", ".npz")
                        and not p.stem.startswith("labels")], key=_natural_key)
        if not files:
            raise ClipError(f"{path}: no .npy or .npz frame files")
        kinds = {p.suffix for p in files}
        if len(kinds) > 1:
            raise ClipError(f"{path}: mixes .npy and .npz frames; use one kind")
        frames, labs = [], []
        for p in files:
            try:
                if p.suffix == ".npy":
                    a = np.load(p, allow_pickle=False)
                else:
                    with np.load(p, allow_pickle=False) as z:
                        if "frame" not in z.files or "label" not in z.files:
                            raise ClipError(f"{p}: a frame .npz needs arrays 'frame' and 'label'")
                        a = z["frame"]
                        labs.append(np.asarray(z["label"]).reshape(-1))
            except (OSError, ValueError) as e:
                if isinstance(e, ClipError):
                    raise
                raise ClipError(f"{p}: cannot read ({type(e).__name__}: {e})") from None
            a = _frame_array(str(p), a, input_shape)
            check_codes(str(p), a, abits)
            frames.append(a)
        frames = np.stack(frames)
        if labs:
            if any(lb.size != 1 for lb in labs):
                raise ClipError(f"{path}: each frame .npz needs exactly one label")
            labels = _labels_array(str(path), np.concatenate(labs), len(files), num_classes)
        else:
            labels = _read_folder_labels(path, len(files), num_classes)
            if labels is None:
                raise ClipError(f"{path}: no labels (labels.npy, labels.txt or labels.csv)")
    if frames.shape[0] < 1:
        raise ClipError(f"{path}: the sequence has no frames")
    dt = np.uint8 if abits <= 8 else np.uint16
    t = frames.shape[0]
    return Clips(frames=frames.astype(dt)[None], labels=labels[None],
                 occluded=np.zeros((1, t), bool), sources=np.array([-1], np.int64),
                 meta={"synthetic": False, "path": str(path), "n_clips": 1, "n_frames": int(t)})


def eval_and_calibration(bundle, *, n_clips: int, n_frames: int, seed: int = 0,
                         calib_clips: int | None = None, sequence=None) -> tuple[Clips, Clips]:
    """Evaluation clips from the bundle's even-indexed test images (seed ``seed``), or the user's
    ``sequence``; calibration clips from the odd-indexed ones (seed ``seed + 1``; all of them when
    a sequence is given), so thresholds are never chosen on the evaluated frames."""
    n_test = len(bundle.test_x)
    idx = np.arange(n_test)
    eval_src, cal_src = (idx[idx % 2 == 0], idx[idx % 2 == 1]) if n_test > 1 else (idx, idx)
    if sequence:
        clips = load_sequence(sequence, input_shape=tuple(bundle.input_shape),
                              abits=bundle.abits, num_classes=bundle.num_classes)
        cal_src = idx
    else:
        clips = make_clips(bundle.test_x, bundle.test_y, n_clips=n_clips, n_frames=n_frames,
                           seed=seed, abits=bundle.abits, sources=eval_src)
    calib = make_clips(bundle.test_x, bundle.test_y, n_clips=calib_clips or n_clips,
                       n_frames=n_frames, seed=seed + 1, abits=bundle.abits, sources=cal_src)
    return clips, calib
