"""timm's Inception networks at repro's width multiplier, with repro's BatchNorm settings.

timm builds inception_v3, inception_v4 and inception_resnet_v2 at full width only. repro scales
every filter count of the paper by `width` (rounded half away from zero, at least 1). This
module builds timm's own classes while nn.Conv2d, nn.BatchNorm2d and nn.Linear scale the
channel counts they are given, so timm's code, names and wiring stay untouched; the image
channels (3) and the class count are not scaled. Whether the result is exactly repro's
network is checked where it matters: repro's exported weights are loaded with strict=True,
which fails on any differing shape or name.

Used by tools/lockstep_timm.py and tools/timm_train_cifar.py.
"""

import contextlib
import math

import timm
import torch
from torch import nn

# avg-pool padding convention of each timm network, as repro's `avg_pool_padding` names it.
AVG_POOL_PADDING = {
    "inception_v3": "include",
    "inception_v4": "exclude",
    "inception_resnet_v2": "exclude",
}


def scaled(channels: int, width: float) -> int:
    """repro's rule: round(channels * width), half away from zero, at least 1."""
    return max(1, int(math.floor(channels * width + 0.5)))


@contextlib.contextmanager
def scaled_layers(width: float):
    """While active, Conv2d/BatchNorm2d/Linear scale their channel arguments by `width`."""
    conv_init, bn_init, linear_init = nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__

    def conv(self, in_channels, out_channels, *args, **kwargs):
        cin = in_channels if in_channels == 3 else scaled(in_channels, width)
        conv_init(self, cin, scaled(out_channels, width), *args, **kwargs)

    def bn(self, num_features, *args, **kwargs):
        bn_init(self, scaled(num_features, width), *args, **kwargs)

    def linear(self, in_features, out_features, *args, **kwargs):
        linear_init(self, scaled(in_features, width), out_features, *args, **kwargs)

    if width != 1.0:
        nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__ = conv, bn, linear
    try:
        yield
    finally:
        nn.Conv2d.__init__, nn.BatchNorm2d.__init__, nn.Linear.__init__ = conv_init, bn_init, linear_init


def create(arch: str, width: float, num_classes: int, bn_momentum: float, bn_eps: float = 1e-3,
           aux: bool = False) -> nn.Module:
    """timm's `arch` at `width`, without dropout, BatchNorm momentum/eps as repro's config
    (PyTorch convention: running = (1 - momentum) * running + momentum * batch)."""
    kwargs = {"num_classes": num_classes, "drop_rate": 0.0}
    if arch == "inception_v3":
        kwargs["aux_logits"] = aux
    elif aux:
        raise ValueError(f"{arch} has no auxiliary head in timm")
    with scaled_layers(width):
        model = timm.create_model(arch, pretrained=False, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = bn_momentum
            m.eps = bn_eps
    return model


def load_strict(model: nn.Module, state: dict) -> None:
    """Loads repro's exported state dict; every name and shape must match."""
    own = model.state_dict()
    state = dict(state)
    for k, v in own.items():  # repro writes num_batches_tracked; tolerate its absence
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    model.load_state_dict(state, strict=True)
