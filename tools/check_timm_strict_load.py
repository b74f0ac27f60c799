#!/usr/bin/env python3
"""Loads weights saved by repro into timm with load_state_dict(strict=True).

Usage:
  REPRO_EXPORT_DIR=/tmp/repro-export cargo test --release --test timm_export -- --ignored
  python3 tools/check_timm_strict_load.py /tmp/repro-export
Requirements: torch, timm, safetensors.
"""
import sys

import timm
import torch
from safetensors.torch import load_file

directory = sys.argv[1]
for name in ["inception_v3", "inception_v4", "inception_resnet_v2"]:
    model = timm.create_model(name, pretrained=False)
    sd = load_file(f"{directory}/{name}.safetensors")
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 299, 299))
    print(f"{name}: strict load ok, {len(sd)} tensors, logits finite: {bool(torch.isfinite(y).all())}")
