#!/usr/bin/env python3
"""Reference throughput of decode + training augmentation with Pillow + torchvision.

Reads a file of image paths (one per line), applies the torchvision equivalent of the
Inception training preprocessing (RandomResizedCrop to SIZE with area 5-100% and aspect
3/4-4/3, horizontal flip, ColorJitter brightness/saturation, ToTensor, normalise to
[-1, 1]) and prints one JSON line: {"processes": N, "images": M, "seconds": S,
"images_per_s": R} for the fastest of --repeat runs. With --decode-only, only decodes.
Invoked by `cargo bench --bench data_pipeline`.
"""

import argparse
import json
import multiprocessing as mp
import os
import time


def _transform(size):
    import torchvision.transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=32 / 255, saturation=0.5),
            T.ToTensor(),
            T.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )


def _process(args):
    paths, size, decode_only = args
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    transform = _transform(size)
    total = 0.0
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if decode_only:
                continue
            tensor = transform(rgb)
        total += float(tensor[0, 0, 0])
    return total


def _timed(chunks, processes):
    start = time.perf_counter()
    if processes == 1:
        _process(chunks[0])
    else:
        with mp.get_context("fork").Pool(processes) as pool:
            pool.map(_process, chunks)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", required=True, help="text file with one image path per line")
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--processes", type=int, default=1, help="0 = all cores")
    parser.add_argument("--decode-only", action="store_true", help="skip the transforms")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest counts")
    opts = parser.parse_args()
    with open(opts.files) as f:
        paths = [line.strip() for line in f if line.strip()]
    processes = opts.processes or os.cpu_count()
    _process((paths[: min(16, len(paths))], opts.size, False))  # warm-up: imports, caches
    chunks = [(paths[i::processes], opts.size, opts.decode_only) for i in range(processes)]
    seconds = min(_timed(chunks, processes) for _ in range(opts.repeat))
    print(
        json.dumps(
            {
                "processes": processes,
                "images": len(paths),
                "seconds": seconds,
                "images_per_s": len(paths) / seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
