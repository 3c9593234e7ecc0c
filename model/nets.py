"""Reference networks and the network container :class:`QNet`.

A :class:`QNet` is a chain of stages:

- :class:`ComputeBlock`: a BWB conv or linear, a per-k BatchNorm (or, for a layer without BN such
  as the logits layer, a per-k :class:`~progressivenn.model.bwb.SwitchableAffine`), and (hidden layers
  only) an :class:`~progressivenn.model.bwb.ActQuant` (ReLU + requantization to A-bit codes);
- ``nn.MaxPool2d`` (no padding) acting on activation codes;
- ``nn.Flatten`` (C, H, W order).

The network takes **input codes** (unsigned A-bit integers, zero-point 0, any dtype) and multiplies
them by ``input_scale`` itself, so torch and the integer golden model see the same inputs. The last
stage is a linear layer producing logits (bias allowed, no ReLU).

Bring your own network
----------------------
Write an ordinary ``nn.Sequential`` of ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``,
``nn.MaxPool2d``, ``nn.Flatten``, ``nn.Linear`` and ``nn.BatchNorm1d`` and convert it::

    seq = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    net = from_sequential(seq, input_shape=(1, 8, 8), nbits=8, abits=8, input_scale=16 / 255)

Rules (checked, ``ValueError`` otherwise): every conv/linear but the last is followed by an optional
BatchNorm and then ``nn.ReLU``; the last compute layer is an ``nn.Linear`` without ReLU; conv layers
have ``groups=1`` and ``dilation=1``; max-pools have no padding, no dilation and no ``ceil_mode``; a
linear layer needs a flat input (put ``nn.Flatten`` before it). Float weights of the given layers are
copied (as the starting point of training); BN parameters are copied into every per-k table.
"""

from __future__ import annotations

import torch
from torch import nn

from .bwb import ActQuant, BWBConv2d, BWBLinear, SwitchableAffine, SwitchableBatchNorm, check_bits

__all__ = ["ComputeBlock", "AddBlock", "QNet", "from_sequential", "reference_sequential",
           "build_net", "resnet", "NETS", "RESNETS", "ARCHS"]

#: reference networks: name -> (input shape, number of classes)
NETS = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


class ComputeBlock(nn.Module):
    """conv/linear -> per-k BN, or else a per-k affine -> (hidden layers) ReLU + A-bit requantization.

    A block without BN gets a :class:`~progressivenn.model.bwb.SwitchableAffine` (identity until
    trained) so that every compute layer has a trainable per-k scale and offset; both fold into the
    layer's per-k integer tables.
    """

    def __init__(self, op: nn.Module, bn: SwitchableBatchNorm | None, act: ActQuant | None):
        super().__init__()
        self.op = op
        self.bn = bn
        self.act = act
        self.affine = None
        if bn is None:
            self.affine = SwitchableAffine(op.weight.shape[0], op.nbits)

    @property
    def hidden(self) -> bool:
        return self.act is not None

    def forward(self, x):
        x = self.op(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.affine is not None:
            x = self.affine(x)
        if self.act is not None:
            x = self.act(x)
        return x


class AddBlock(nn.Module):
    """Residual add of two activation tensors, then ReLU + A-bit requantization (:class:`ActQuant`).

    Both operands are activation codes times their scales (each >= 0: every conv feeding an add keeps
    its ReLU, the "ReLU before addition" residual unit), so the integer form is exact:
    ``clamp((xa*Ma + xb*Mb + 2^(S-1)) >> S, 0, 2^A-1)`` with ``M = round(s_in / s_out * 2^S)``.
    """

    def __init__(self, abits: int):
        super().__init__()
        self.act = ActQuant(abits)

    def forward(self, a, b):
        return self.act(a + b)


class QNet(nn.Module):
    """A BWB network over input codes; see the module docstring.

    ``inputs`` (optional, one entry per stage) makes it a graph: ``None`` reads the previous stage
    (the default, a chain), an integer ``j`` reads stage ``j``'s output (-1: the scaled input), and
    an :class:`AddBlock` takes a pair ``(a, b)``.
    """

    def __init__(self, stages, *, input_shape, num_classes: int, nbits: int, abits: int,
                 input_scale: float, inputs=None):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.nbits = nbits
        self.abits = abits
        self.input_scale = float(input_scale)
        if inputs is not None and len(inputs) != len(self.stages):
            raise ValueError(f"inputs has {len(inputs)} entries for {len(self.stages)} stages")
        self.inputs = list(inputs) if inputs is not None else [None] * len(self.stages)
        for i, (st, src) in enumerate(zip(self.stages, self.inputs)):
            if isinstance(st, AddBlock):
                if not (isinstance(src, (tuple, list)) and len(src) == 2
                        and all(-1 <= int(j) < i for j in src)):
                    raise ValueError(f"stage {i} (add) needs inputs (a, b) of earlier stages, "
                                     f"not {src!r}")
            elif src is not None and not (isinstance(src, int) and -1 <= src < i):
                raise ValueError(f"stage {i}: input must be an earlier stage index or -1, "
                                 f"not {src!r}")

    @property
    def is_chain(self) -> bool:
        return all(src is None for src in self.inputs)

    def _dtype(self):
        return next(s.op.weight.dtype for s in self.stages if isinstance(s, ComputeBlock))

    def forward(self, codes):
        x = codes.to(self._dtype()) * self.input_scale
        if self.is_chain:
            for st in self.stages:
                x = st(x)
            return x
        return self._walk(x)[-1]

    def stage_outputs(self, codes) -> list:
        """Every stage's output (float, fake-quant), in stage order; for tests and tools."""
        return self._walk(codes.to(self._dtype()) * self.input_scale)

    def _walk(self, x) -> list:
        """Run the stage graph on the scaled input ``x``; every stage's output, in order."""
        x_in, outs = x, []
        for st, src in zip(self.stages, self.inputs):
            if isinstance(st, AddBlock):
                a, b = (x_in if j == -1 else outs[j] for j in src)
                x = st(a, b)
            else:
                if src is not None:
                    x = x_in if src == -1 else outs[src]
                x = st(x)
            outs.append(x)
        return outs

    def compute_blocks(self):
        return [s for s in self.stages if isinstance(s, ComputeBlock)]

    def bn_modules(self):
        return [s.bn for s in self.compute_blocks() if s.bn is not None]

    def affine_modules(self):
        return [s.affine for s in self.compute_blocks() if s.affine is not None]

    def table_parameters(self, k: int) -> list:
        """The trainable per-k parameters of table ``k``: every BN table's gamma/beta and every
        per-k affine's scale/offset (as whole tensors; the affine rows are ``[k-1]``)."""
        params = []
        for bn in self.bn_modules():
            params += list(bn.tables[k - 1].parameters())
        for af in self.affine_modules():
            params += [af.weight, af.bias]
        return params


def from_sequential(seq: nn.Sequential, *, input_shape, nbits: int = 8, abits: int = 8,
                    input_scale: float = 1 / 255, num_classes: int | None = None) -> QNet:
    """Convert a plain ``nn.Sequential`` (see the module docstring) into a :class:`QNet`."""
    check_bits("nbits", nbits)
    check_bits("abits", abits)
    if not (len(input_shape) == 3 and all(isinstance(v, int) and v > 0 for v in input_shape)):
        raise ValueError(f"input_shape must be (C, H, W) of positive integers, not {input_shape!r}")
    mods = list(seq)
    stages = []
    i = 0
    computes = [j for j, m in enumerate(mods) if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not computes:
        raise ValueError("the network has no conv or linear layer")
    last = computes[-1]
    while i < len(mods):
        m = mods[i]
        where = f"layer {i} ({type(m).__name__})"
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            is_last = i == last
            if isinstance(m, nn.Conv2d):
                if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                    raise ValueError(f"{where}: only groups=1, dilation=1, zero padding supported")
                if isinstance(m.padding, str):
                    raise ValueError(f"{where}: give padding as integers, not {m.padding!r}")
                if is_last:
                    raise ValueError(f"{where}: the last compute layer must be nn.Linear (logits)")
                op = BWBConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                               padding=m.padding, bias=m.bias is not None, nbits=nbits)
            else:
                op = BWBLinear(m.in_features, m.out_features, bias=m.bias is not None, nbits=nbits)
            with torch.no_grad():
                op.weight.copy_(m.weight)
                if m.bias is not None:
                    op.bias.copy_(m.bias)
            i += 1
            bn = None
            if i < len(mods) and isinstance(mods[i], (nn.BatchNorm2d, nn.BatchNorm1d)):
                src = mods[i]
                dims = 2 if isinstance(src, nn.BatchNorm2d) else 1
                if (dims == 2) != isinstance(m, nn.Conv2d):
                    raise ValueError(f"layer {i}: BatchNorm{dims}d does not fit a "
                                     f"{type(m).__name__}")
                bn = SwitchableBatchNorm(src.num_features, nbits, dims, eps=src.eps)
                for t in bn.tables:
                    t.load_state_dict(src.state_dict())
                i += 1
            act = None
            if i < len(mods) and isinstance(mods[i], nn.ReLU):
                if is_last:
                    raise ValueError(f"layer {i}: the last linear layer gives logits; no ReLU")
                act = ActQuant(abits)
                i += 1
            elif not is_last:
                raise ValueError(f"{where}: a hidden conv/linear must be followed by "
                                 f"[BatchNorm] and ReLU")
            elif i < len(mods):
                raise ValueError(f"layer {i}: nothing may follow the last linear layer (logits)")
            stages.append(ComputeBlock(op, bn, act))
        elif isinstance(m, nn.MaxPool2d):
            if m.padding not in (0, (0, 0)) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise ValueError(f"{where}: max-pool needs padding=0, dilation=1, ceil_mode=False")
            if i > last:
                raise ValueError(f"{where}: nothing may follow the last linear layer")
            stages.append(nn.MaxPool2d(m.kernel_size, m.stride))
            i += 1
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"{where}: only nn.Flatten() (start_dim=1) is supported")
            stages.append(nn.Flatten())
            i += 1
        else:
            raise ValueError(f"{where}: unsupported layer kind; use Conv2d, BatchNorm2d/1d, ReLU, "
                             f"MaxPool2d, Flatten, Linear")
    with torch.no_grad():  # check shapes and find the number of classes
        probe = torch.zeros(2, *input_shape)
        x = probe
        try:
            for st in stages:
                if isinstance(st, ComputeBlock) and isinstance(st.op, nn.Linear) and x.dim() != 2:
                    raise ValueError("a linear layer needs a flat input: put nn.Flatten() before it")
                x = st.op(x) if isinstance(st, ComputeBlock) else st(x)
        except RuntimeError as e:
            raise ValueError(f"the layers do not fit input_shape {tuple(input_shape)}: "
                             f"{str(e).splitlines()[0]}") from None
    classes = x.shape[1]
    if num_classes is not None and classes != num_classes:
        raise ValueError(f"the network gives {classes} logits, not num_classes={num_classes}")
    return QNet(stages, input_shape=input_shape, num_classes=classes, nbits=nbits, abits=abits,
                input_scale=input_scale)


def _cbr(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def reference_sequential(name: str) -> nn.Sequential:
    """The float ``nn.Sequential`` of a reference network (``digits``, ``mnist``, ``cifar10``)."""
    if name == "digits":  # 8x8x1 -> 16@8x8 -> 16@4x4 -> 32@4x4 -> 32@2x2 -> 128 -> 10
        layers = [*_cbr(1, 16), nn.MaxPool2d(2), *_cbr(16, 32), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(128, 10)]
    elif name == "mnist":  # 28 -> 14 -> 7 -> 3; 64*3*3 = 576
        layers = [*_cbr(1, 16), nn.MaxPool2d(2), *_cbr(16, 32), nn.MaxPool2d(2), *_cbr(32, 64),
                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(576, 10)]
    elif name == "cifar10":  # small VGG: 2x32, pool, 2x64, pool, 2x128, pool, 2048 -> 10
        layers = [*_cbr(3, 32), *_cbr(32, 32), nn.MaxPool2d(2), *_cbr(32, 64), *_cbr(64, 64),
                  nn.MaxPool2d(2), *_cbr(64, 128), *_cbr(128, 128), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(2048, 10)]
    else:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETS)}")
    return nn.Sequential(*layers)


#: residual networks: name -> (stage widths, residual blocks per stage)
RESNETS = {"resnet8": ((16, 32, 64), (1, 1, 1)), "resnet20": ((16, 32, 64), (3, 3, 3)),
           "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2))}
#: every architecture ``build_net`` knows
ARCHS = tuple(NETS) + tuple(RESNETS)


def resnet(widths, blocks, *, input_shape, num_classes: int, nbits: int = 8, abits: int = 8,
           input_scale: float = 1 / 255, stem_pool: bool | None = None) -> QNet:
    """A BWB residual network ("ReLU before addition" units, so that both operands of every add
    are activation codes and the add folds to exact integers).

    stem: conv3x3(C -> widths[0]) + BN + ReLU (+ max-pool 2 when the input is >= 16 pixels wide and
    ``stem_pool`` is not False, e.g. MNIST); then per stage s and block b a unit
    ``y = ActQuant(relu(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x))`` where the first block
    of every stage after the first has stride 2 and a 1x1 projection shortcut (conv + BN + ReLU);
    then max-pool down to at most 2x2, flatten, linear logits.
    """
    c, h, w = (int(v) for v in input_shape)
    if stem_pool is None:
        stem_pool = min(h, w) >= 16
    stages, inputs = [], []

    def block(cin, cout, k, stride, src=None):
        op = BWBConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, nbits=nbits)
        stages.append(ComputeBlock(op, SwitchableBatchNorm(cout, nbits, 2), ActQuant(abits)))
        inputs.append(src)
        return len(stages) - 1

    cur = block(c, widths[0], 3, 1)
    if stem_pool:
        stages.append(nn.MaxPool2d(2, 2))
        inputs.append(None)
        cur = len(stages) - 1
        h, w = h // 2, w // 2
    cin = widths[0]
    for si, (cout, nb) in enumerate(zip(widths, blocks)):
        for bi in range(nb):
            stride = 2 if (si > 0 and bi == 0) else 1
            a = block(cin, cout, 3, stride, None)
            a = block(cout, cout, 3, 1, None)
            if stride != 1 or cin != cout:
                sc = block(cin, cout, 1, stride, cur)
            else:
                sc = cur
            stages.append(AddBlock(abits))
            inputs.append((a, sc))
            cur = len(stages) - 1
            if stride == 2:
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            cin = cout
    if min(h, w) > 2:
        pk = min(h, w) // 2
        stages.append(nn.MaxPool2d(pk, pk))
        inputs.append(None)
        h, w = (h - pk) // pk + 1, (w - pk) // pk + 1
    stages.append(nn.Flatten())
    inputs.append(None)
    stages.append(ComputeBlock(BWBLinear(cin * h * w, num_classes, nbits=nbits), None, None))
    inputs.append(None)
    net = QNet(stages, input_shape=input_shape, num_classes=num_classes, nbits=nbits, abits=abits,
               input_scale=input_scale, inputs=inputs)
    with torch.no_grad():
        out = net(torch.zeros(1, *input_shape, dtype=torch.int64))
    if out.shape != (1, num_classes):
        raise ValueError(f"resnet: the layers give {tuple(out.shape)}, not (1, {num_classes})")
    return net


def build_net(name: str, *, nbits: int = 8, abits: int = 8, input_scale: float,
              input_shape=None, num_classes: int | None = None) -> QNet:
    """A reference network as a :class:`QNet` (fresh random weights).

    ``name``: a dataset's reference net (:data:`NETS`) or a residual net (:data:`RESNETS`; these
    take ``input_shape`` and ``num_classes``, default: MNIST's).
    """
    if name in RESNETS:
        widths, blocks = RESNETS[name]
        return resnet(widths, blocks, input_shape=tuple(input_shape or (1, 28, 28)),
                      num_classes=int(num_classes or 10), nbits=nbits, abits=abits,
                      input_scale=input_scale,
                      stem_pool=False if name == "resnet18" else None)  # CIFAR ResNet-18: no pool
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(ARCHS)}")
    seq = reference_sequential(name)
    shape, classes = NETS[name]
    return from_sequential(seq, input_shape=shape, nbits=nbits, abits=abits,
                           input_scale=input_scale, num_classes=classes)
