#!/usr/bin/env python3
"""Saves timm's released ImageNet weights as safetensors state dicts that repro loads by name
(for experiments/table*-released.yaml).

Usage: python3 tools/export_timm_weights.py OUT_DIR [MODEL ...]
Default models: inception_v3.tf_in1k inception_v4.tf_in1k inception_resnet_v2.tf_in1k
Writes OUT_DIR/<model>.safetensors. Requirements: torch, timm, safetensors, network access
to the Hugging Face hub (once).
"""
import pathlib
import sys

import timm
from safetensors.torch import save_file

DEFAULT = ["inception_v3.tf_in1k", "inception_v4.tf_in1k", "inception_resnet_v2.tf_in1k"]

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "weights")
out.mkdir(parents=True, exist_ok=True)
for name in sys.argv[2:] or DEFAULT:
    model = timm.create_model(name, pretrained=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}.safetensors"))
    print(f"{out / name}.safetensors: {sum(v.numel() for v in state.values()):,} values")
