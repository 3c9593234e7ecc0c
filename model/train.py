"""Quantization-aware training from scratch (Adam, cosine learning rate).

Two modes:

- default (the paper): train at ``k = N`` planes; BN table ``N`` is trained (the per-k affines of
  layers without BN stay the identity: they are left to BN retraining).
- ``any_k``: the shared weights and activation clips learn from every k, each k trains its own
  table (BN and per-k affines). ``schedule`` picks the planes of a step:

  - ``"sandwich"`` (default): every step runs ``k = N`` on the labels, then ``k = 1`` and one ``k``
    drawn from ``2..N-1``, each trained against the k=N output of the same step (distillation,
    weight ``distill``, temperature ``temperature``; the rest of the loss is the labels); the
    gradients of the three add up before one optimizer step (the smallest and largest k every
    step, as in slimmable / any-precision networks);
  - ``"uniform"``: one ``k`` drawn uniformly from ``1..N`` per step, labels only.

  The cross-entropy on the labels is label-smoothed by :data:`LABEL_SMOOTHING_ANY_K` (0.1) in this
  mode unless ``label_smoothing`` says otherwise (0 at k=N).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .bwb import planes, set_k
from .data import Dataset
from .nets import QNet

__all__ = ["train", "accuracy", "batches", "pick_device", "augment", "SCHEDULES", "distill_loss",
           "DEFAULT_EPOCHS", "DEFAULT_EPOCHS_ANY_K", "default_epochs",
           "LABEL_SMOOTHING_ANY_K"]

#: any-k schedules (see the module docstring)
SCHEDULES = ("sandwich", "uniform")

#: default training epochs per data set (``pnn train`` and ``progressivenn.api.train`` both read
#: them through :func:`default_epochs`)
DEFAULT_EPOCHS = {"digits": 30, "mnist": 2, "cifar10": 10, "cifar100": 10}
#: --any-k trains every k on the same images: longer where the data set is small (digits seeds
#: 0-2, label smoothing 0.1: k=8 99.44 / 98.89 / 99.72% after 60 epochs, 99.17 / 99.44 / 100% after 80)
DEFAULT_EPOCHS_ANY_K = {**DEFAULT_EPOCHS, "digits": 80}


#: --any-k: label smoothing of the cross-entropy on the labels (softer k=N targets to distil from;
#: digits seed 0 at k=8: 98.89% without, 99.44% with 0.1)
LABEL_SMOOTHING_ANY_K = 0.1


def default_epochs(dataset: str, any_k: bool = False, fallback: int = 10) -> int:
    """The default number of training epochs for ``dataset`` and mode (``fallback`` for a data set
    without a default, e.g. a user's own :class:`~progressivenn.model.data.Dataset`)."""
    return (DEFAULT_EPOCHS_ANY_K if any_k else DEFAULT_EPOCHS).get(dataset, fallback)


def distill_loss(out: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(out/T))`` (batch mean); ``teacher`` is not trained."""
    t = float(temperature)
    return t * t * F.kl_div(F.log_softmax(out / t, 1), F.log_softmax(teacher.detach() / t, 1),
                            reduction="batchmean", log_target=True)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
    """Yield (codes, labels) torch batches; shuffled when ``rng`` is given."""
    idx = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    for i in range(0, len(x), batch_size):
        j = idx[i:i + batch_size]
        yield torch.from_numpy(x[j].astype(np.int64)), torch.from_numpy(y[j])


def pick_device(device: str = "cpu") -> torch.device:
    """``"auto"``: CUDA when a GPU is present, else the CPU; ``"cuda"`` fails clearly without one."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available to torch here")
    return torch.device(device)


def augment(xb: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flips and random crops (zero padding ``pad``) per image, on input codes
    (the standard CIFAR augmentation; zero is the real zero of a code)."""
    n, c, h, w = xb.shape
    flip = torch.rand(n, generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None].to(xb.device), xb.flip(3), xb)
    xp = torch.nn.functional.pad(xb, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(xb.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(xb.device)
    rows = (dy[:, None] + torch.arange(h, device=xb.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
    xp = torch.gather(xp, 2, rows)
    cols = (dx[:, None] + torch.arange(w, device=xb.device))[:, None, None, :].expand(n, c, h, w)
    return torch.gather(xp, 3, cols)


@torch.no_grad()
def accuracy(net: QNet, x: np.ndarray, y: np.ndarray, k: int | None = None, table: int | None = None,
             batch_size: int = 500) -> float:
    """Fake-quant torch accuracy (eval mode) with ``k`` planes (default N) and BN ``table``."""
    was = net.training
    net.eval()
    k = net.nbits if k is None else k
    correct = 0
    dev = next(net.parameters()).device
    with planes(net, k, table):
        for xb, yb in batches(x, y, batch_size):
            correct += int((net(xb.to(dev)).argmax(1).cpu() == yb).sum())
    net.train(was)
    return correct / max(len(x), 1)


def _check_options(epochs, schedule: str, distill: float, label_smoothing: float | None,
                   any_k: bool) -> float:
    """Validate :func:`train`'s options (ValueError naming the bad one); the label smoothing."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    if not 0 <= distill <= 1:
        raise ValueError(f"distill must be in [0, 1], not {distill!r}")
    if label_smoothing is None:
        label_smoothing = LABEL_SMOOTHING_ANY_K if any_k else 0.0
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), not {label_smoothing!r}")
    return label_smoothing


def _optimizer(net: QNet, any_k: bool, lr: float, total: int):
    """Adam over the trained parameters and its cosine schedule over ``total`` steps; at k=N only,
    the per-k affines (layers without BN) stay the identity (BN retraining's part)."""
    affine = {id(p) for m in net.affine_modules() for p in m.parameters()}
    opt = torch.optim.Adam([p for p in net.parameters() if any_k or id(p) not in affine], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return opt, sched


def _use_amp(amp: bool | None, dev: torch.device, net: QNet) -> bool:
    """float16 autocast: default on CUDA only, never on the CPU or with N or A above 8."""
    if amp is None:
        amp = dev.type == "cuda"
    return bool(amp) and dev.type == "cuda" and net.nbits <= 8 and net.abits <= 8


def _step_planes(rng: np.random.Generator, n: int, any_k: bool, schedule: str) -> list[int]:
    """The k of one step, the label-trained one first (module docstring: schedules)."""
    if not any_k:
        return [n]
    if schedule == "uniform" or n == 1:
        return [int(rng.integers(1, n + 1))]
    return [n, 1] + ([int(rng.integers(2, n))] if n > 2 else [])


@dataclass
class _Step:
    """What one optimizer step needs besides the batch."""
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    dev: torch.device
    amp: bool
    distill: float
    temperature: float


def _train_step(net: QNet, xb: torch.Tensor, yb: torch.Tensor, ks: list[int], s: _Step) -> float:
    """One optimizer step: the gradients of every k in ``ks`` add up (the first on the labels,
    the others also distilled from it); returns the first k's loss."""
    s.opt.zero_grad(set_to_none=True)
    top = None
    for i, k in enumerate(ks):
        set_k(net, k)
        with torch.autocast(s.dev.type, dtype=torch.float16, enabled=s.amp):
            out = net(xb)
        out = out.float()
        if i == 0:
            loss = s.loss_fn(out, yb)
            top, loss_top = out.detach(), loss.item()   # the log reports the top k's loss
        else:
            loss = ((1 - s.distill) * s.loss_fn(out, yb)
                    + s.distill * distill_loss(out, top, s.temperature))
        s.scaler.scale(loss).backward()
    s.scaler.step(s.opt)
    s.scaler.update()
    s.sched.step()
    return loss_top


def _epoch(net: QNet, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
           gen: torch.Generator, s: _Step, *, any_k: bool, schedule: str, augment_images: bool,
           bar, max_steps: int | None, step: int) -> tuple[float, int]:
    """One pass over the training images (shuffled by ``rng``; stops at ``max_steps``); returns
    the mean loss of the label-trained k and the optimizer steps done so far."""
    net.train()
    n = net.nbits
    tot, cnt = 0.0, 0
    for xb, yb in batches(x, y, batch_size, rng):
        ks = _step_planes(rng, n, any_k, schedule)
        if augment_images:
            xb = augment(xb, gen)
        xb, yb = xb.to(s.dev, non_blocking=True), yb.to(s.dev, non_blocking=True)
        tot += _train_step(net, xb, yb, ks, s) * len(yb)
        cnt += len(yb)
        step += 1
        if bar is not None:
            bar.update(1)
        if max_steps is not None and step >= max_steps:
            break
    return tot / cnt, step


def train(net: QNet, ds: Dataset, *, epochs: int = 20, any_k: bool = False, seed: int = 0,
          batch_size: int = 64, lr: float = 3e-3, limit: int | None = None,
          progress: bool = True, device: str = "cpu", amp: bool | None = None,
          augment_images: bool = False, test_limit: int | None = None,
          max_steps: int | None = None, schedule: str = "sandwich", distill: float = 0.5,
          temperature: float = 1.0, label_smoothing: float | None = None) -> dict:
    """Train ``net`` on ``ds`` in place; returns a log (per-epoch loss and test accuracy at k=N).

    ``device``: ``cpu``, ``cuda`` or ``auto``; the network is trained there and returned on the CPU.
    ``amp``: float16 autocast with a gradient scaler (default: on CUDA only). It is safe here: the
    k-plane weights ``alpha*2^(N-k)*q_k`` (|q_k| <= 2^N-1 <= 255 for N <= 8) and the activation codes
    (<= 255 for A <= 8) are exact in float16 up to the common per-channel scale, products accumulate
    in float32, and BN, the activation quantizer and the loss run in float32; with N or A above 8 it
    is switched off. Evaluation, BN retraining and export always run in float32/float64.
    ``augment_images``: random flips + crops (CIFAR). ``test_limit``: test images per epoch report.
    ``max_steps``: stop after this many optimizer steps (smoke tests).
    ``schedule``, ``distill``, ``temperature``: the any-k schedule (module docstring).
    ``label_smoothing``: of the cross-entropy on the labels (0 = none; default
    :data:`LABEL_SMOOTHING_ANY_K` with ``any_k``, 0 at k=N).
    """
    label_smoothing = _check_options(epochs, schedule, distill, label_smoothing, any_k)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = ds.train_x, ds.train_y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    total = epochs * math.ceil(len(x) / batch_size)
    opt, sched = _optimizer(net, any_k, lr, total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    dev = pick_device(device)
    amp = _use_amp(amp, dev, net)
    net.to(dev)
    s = _Step(opt, sched, torch.amp.GradScaler("cuda", enabled=amp), loss_fn, dev, amp, distill,
              temperature)
    gen = torch.Generator().manual_seed(seed)
    tx, ty = ds.test_x[:test_limit], ds.test_y[:test_limit]
    log = {"epochs": [], "any_k": any_k, "seed": seed, "batch_size": batch_size, "lr": lr,
           "device": str(dev), "amp": amp, "augment": augment_images}
    log["label_smoothing"] = label_smoothing
    if any_k:
        log.update(schedule=schedule, distill=distill, temperature=temperature)
    step = 0
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="train", unit="step", leave=True)
    n = net.nbits
    for ep in range(epochs):
        loss, step = _epoch(net, x, y, batch_size, rng, gen, s, any_k=any_k, schedule=schedule,
                            augment_images=augment_images, bar=bar, max_steps=max_steps, step=step)
        set_k(net, n)
        acc = accuracy(net, tx, ty)
        log["epochs"].append({"epoch": ep + 1, "loss": loss, "test_acc_k%d" % n: acc})
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        if max_steps is not None and step >= max_steps:
            break
    if bar is not None:
        bar.close()
    net.cpu()
    net.eval()
    log["seconds"] = time.time() - t0
    return log
