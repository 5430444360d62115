"""Random cutouts of the decoded image, with augmentations, made for all cutouts at once.

Cutouts as in Crowson's notebook: side ``s = rand**cut_pow * (max - min) + min`` at a random offset,
resampled to CLIP's input size by adaptive average pooling (so large cutouts are antialiased). Adaptive
average pooling is separable, ``cutout = P_y @ image @ P_x^T`` with one averaging matrix per axis and
cutout, so on a GPU all cutouts are made by two batched matrix products (one op each, no Python loop, no
kernel launch per cutout). On a CPU, one slice and one pooling call per cutout is faster (measured
forward + backward, 32 cutouts of 256x256, one thread: 0.19 s against 0.31 s for the products, and
0.59 s for one `torchvision.ops.roi_align`, whose backward is a serial loop); both give the same pixels
(tests/generator/test_cutouts.py). The boxes are drawn on the CPU, so reading them costs no device sync.
One `grid_sample` applies the geometric augmentations to the whole batch; colour, noise and erasing are
batched too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class MakeCutouts:
    """Callable: image [1, 3, H, W] in [0, 1] -> cutouts [cutn, 3, size, size] in about [0, 1]."""

    def __init__(self, size: int, cutn: int, cut_pow: float = 1.0, augmentations=(), noise: float = 0.1):
        self.size, self.cutn, self.cut_pow = size, cutn, cut_pow
        self.augmentations = set(augmentations)
        self.noise = noise

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _, _, height, width = image.shape
        n, device = self.cutn, image.device

        def rand(*shape):  # small draws, made on the CPU and copied without waiting for the device
            return to_device(torch.rand(*shape, generator=generator), device)

        # 1. Boxes (on the CPU): sizes by cut_pow, offsets uniform; each pooled to the CLIP input size.
        max_size = min(width, height)
        min_size = min(width, height, self.size)
        sizes = (torch.rand(n, generator=generator) ** self.cut_pow * (max_size - min_size) + min_size).floor()
        x0 = (torch.rand(n, generator=generator) * (width - sizes + 1)).floor()
        y0 = (torch.rand(n, generator=generator) * (height - sizes + 1)).floor()
        cutouts = pool_boxes(image, sizes, x0, y0, self.size, batched=image.device.type != "cpu")

        # 2. Geometry: flip, rotation, shift and shear as one affine grid per cutout.
        geometric = self.augmentations & {"Af", "Ro", "Fl"}
        if geometric:
            cutouts = self._affine(cutouts, geometric, rand)
        # 3. Photometric: colour jitter, noise, erasing, each batched.
        if "Ji" in self.augmentations:
            cutouts = _jitter(cutouts, rand)
        if "Er" in self.augmentations:
            cutouts = _erase(cutouts, rand)
        if "Gn" in self.augmentations:
            facs = rand(n, 1, 1, 1) * self.noise
            cutouts = cutouts + facs * randn_like(cutouts, generator)
        return cutouts

    def _affine(self, x: torch.Tensor, kinds: set[str], rand) -> torch.Tensor:
        n = x.shape[0]
        angle = torch.zeros(n, device=x.device)
        shift = torch.zeros(n, 2, device=x.device)
        shear = torch.zeros(n, device=x.device)
        scale_x = torch.ones(n, device=x.device)
        if kinds & {"Af", "Ro"}:
            angle = (rand(n) * 2 - 1) * math.radians(15)
        if "Af" in kinds:
            shift = (rand(n, 2) * 2 - 1) * 0.2  # +-10% of the side; grid coordinates span 2
            shear = (rand(n) * 2 - 1) * math.radians(5)
        if "Fl" in kinds:
            scale_x = torch.where(rand(n) < 0.5, -1.0, 1.0)
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        theta = torch.stack([
            torch.stack([cos * scale_x, -sin + cos * tan, shift[:, 0]], 1),
            torch.stack([sin * scale_x, cos + sin * tan, shift[:, 1]], 1),
        ], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def pool_boxes(image: torch.Tensor, sizes: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, out: int,
               batched: bool = True) -> torch.Tensor:
    """Square boxes (side `sizes`, corner `x0`, `y0`; CPU tensors) of image [1, C, H, W], each
    adaptive-average-pooled to out x out: [n, C, out, out]."""
    if not batched:
        return torch.cat([
            F.adaptive_avg_pool2d(image[:, :, y:y + s, x:x + s], out)
            for s, x, y in zip(sizes.int().tolist(), x0.int().tolist(), y0.int().tolist())
        ])
    boxes = to_device(torch.stack([sizes, x0, y0]).long(), image.device)  # one small copy, no wait
    rows = _averaging(boxes[2], boxes[0], out, image.shape[2]).to(image.dtype)  # [n, out, H]
    cols = _averaging(boxes[1], boxes[0], out, image.shape[3]).to(image.dtype)  # [n, out, W]
    return rows.unsqueeze(1) @ image @ cols.transpose(1, 2).unsqueeze(1)


def _averaging(starts: torch.Tensor, sizes: torch.Tensor, out: int, length: int) -> torch.Tensor:
    """[n, out, length]: row i averages positions start + [floor(i s / out), ceil((i + 1) s / out)),
    the windows `adaptive_avg_pool` uses over a span of s positions (integer arithmetic, as it does)."""
    i = torch.arange(out, device=sizes.device)
    span = sizes.view(-1, 1)
    low = torch.div(i * span, out, rounding_mode="floor")
    high = -torch.div(-(i + 1) * span, out, rounding_mode="floor")
    position = torch.arange(length, device=sizes.device).view(1, 1, -1) - starts.view(-1, 1, 1)
    inside = (position >= low.unsqueeze(-1)) & (position < high.unsqueeze(-1))
    return inside / (high - low).unsqueeze(-1)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`. To a GPU through pinned memory, so the host does not wait for the copy
    (a copy from pageable memory would wait for all the work queued before it)."""
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Normal noise shaped like x, seeded by the CPU `generator`. On the CPU it is drawn from the generator
    itself; elsewhere it is drawn on the device, from a generator seeded by one draw of it (no copy of the
    noise to the device each step)."""
    if x.device.type == "cpu":
        return torch.randn(x.shape, generator=generator).to(x.dtype)
    seed = int(torch.randint(2 ** 62, (1,), generator=generator))
    device_generator = torch.Generator(x.device).manual_seed(seed)
    return torch.randn(x.shape, generator=device_generator, device=x.device, dtype=x.dtype)


def _jitter(x: torch.Tensor, rand) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by a factor in [0.9, 1.1] per cutout."""
    n = x.shape[0]
    brightness, contrast, saturation = (1 + (rand(3, n, 1, 1, 1) * 2 - 1) * 0.1).to(x.dtype)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (x - gray) * saturation + gray


def _erase(x: torch.Tensor, rand, p: float = 0.5) -> torch.Tensor:
    """Blank one random rectangle (2-20% of the area) in about half the cutouts."""
    n, _, h, w = x.shape
    area = rand(n) * 0.18 + 0.02
    aspect = torch.exp((rand(n) * 2 - 1) * math.log(3))
    eh = (area * aspect).sqrt().clamp(max=1) * h
    ew = (area / aspect).sqrt().clamp(max=1) * w
    top = rand(n) * (h - eh)
    left = rand(n) * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top.view(n, 1, 1)) & (ys < (top + eh).view(n, 1, 1)) & \
             (xs >= left.view(n, 1, 1)) & (xs < (left + ew).view(n, 1, 1))
    chosen = (rand(n) < p).view(n, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    return x.masked_fill(mask, 0.0)
