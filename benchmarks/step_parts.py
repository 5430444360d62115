"""The step's parts, forward + backward, baseline way vs engine way, on one thread (CPU seconds).

    .venv/bin/python benchmarks/step_parts.py --repeats 2

One thread, timed by `time.thread_time`, so that on a shared machine the figures measure the work rather
than other processes' load. Parts: the f16_16384 decoder on a [1, 256, 16, 16] latent (taming's forward vs
generator.decoder), ViT-B/32 on 32 cutouts at 224 (open_clip's forward vs generator.vit), and 32 cutouts
of a 256x256 image (a pooling loop, one torchvision roi_align, and the engine's MakeCutouts with and
without augmentations).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # not this folder: its queue.py shadows stdlib's

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.fullsize import random_clip, random_vqgan  # noqa: E402
from generator.cutouts import MakeCutouts  # noqa: E402
from generator.decoder import decode  # noqa: E402


def parts() -> dict:
    vqgan, clip = random_vqgan(), random_clip()
    z0, x0, image0 = torch.randn(1, 256, 16, 16), torch.rand(32, 3, 224, 224), torch.rand(1, 3, 256, 256)
    gen = torch.Generator().manual_seed(0)
    sizes = (torch.rand(32, generator=gen) * 32 + 224).floor()
    x = (torch.rand(32, generator=gen) * (256 - sizes + 1)).floor()
    y = (torch.rand(32, generator=gen) * (256 - sizes + 1)).floor()
    boxes = torch.stack([torch.zeros(32), x, y, x + sizes, y + sizes], 1)

    def backward(fn, source):
        leaf = source.clone().requires_grad_(True)
        fn(leaf).square().sum().backward()

    def roi(image):
        from torchvision.ops import roi_align
        return roi_align(image, boxes, 224, aligned=True)

    def loop(image):
        return torch.cat([F.adaptive_avg_pool2d(image[:, :, b:b + s, a:a + s], 224)
                          for s, a, b in zip(sizes.int().tolist(), x.int().tolist(), y.int().tolist())])

    plain, augmented = MakeCutouts(224, 32), MakeCutouts(224, 32, augmentations=["Af", "Fl", "Ji", "Gn", "Er"])
    return {
        "decoder taming": lambda: backward(vqgan.decode, z0),
        "decoder engine": lambda: backward(lambda z: decode(vqgan.decoder, vqgan.post_quant_conv(z)), z0),
        "ViT open_clip": lambda: backward(lambda im: clip.model.encode_image((im - clip.mean) / clip.std), x0),
        "ViT engine": lambda: backward(clip.encode_image, x0),
        "cutouts loop": lambda: backward(loop, image0),
        "cutouts roi_align": lambda: backward(roi, image0),
        "cutouts engine, no aug": lambda: backward(lambda im: plain(im, gen), image0),
        "cutouts engine, 5 augs": lambda: backward(lambda im: augmented(im, gen), image0),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="timed calls of each, alternating (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fns = parts()
    for fn in fns.values():  # warm-up
        fn()
    times = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start = time.thread_time()
            fn()
            times[name].append(time.thread_time() - start)
    for name, values in times.items():
        print(f"{name:24s} {statistics.median(values):7.3f} s CPU (median of {len(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
