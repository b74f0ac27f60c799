"""Statistics of timm's freshly initialised Inception weights, for tests/timm_init.rs.

Usage: python3 tools/timm_init_stats.py MODEL CLASSES SEED
Prints one JSON object: {tensor name: [elements, mean, std, max |x|]} over the model's
parameters and BatchNorm buffers, as `timm.create_model(MODEL, num_classes=CLASSES)` leaves
them (PyTorch's default initialisation, and timm's own choices where a model has them).
"""
import json
import sys

import timm
import torch


def main():
    model, classes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(seed)
    net = timm.create_model(model, num_classes=classes, pretrained=False)
    out = {}
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        if not t.is_floating_point():
            continue
        x = t.detach().double().flatten()
        out[name] = [x.numel(), x.mean().item(), x.std(unbiased=False).item(), x.abs().max().item()]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
