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
batched too. On a GPU, all of a step's draws reach the device in one copy, and the rest is pure tensor
work that torch.compile can fuse and CUDA graphs replay.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class MakeCutouts:
    """Callable: image [1, 3, H, W] in [0, 1] -> cutouts [cutn, 3, size, size] in about [0, 1].

    A call first makes every random draw of the step on the CPU, from the run's generator and in a fixed
    order (boxes, then each augmentation's numbers), then applies them. On a GPU the draws travel in one
    copy and `transform` (pooling and augmentations, pure tensor work) may be replaced by a compiled
    version of `device_transform`, which CUDA graphs can then replay whole.
    """

    def __init__(self, size: int, cutn: int, cut_pow: float = 1.0, augmentations=(), noise: float = 0.1,
                 padding: str = "zeros"):
        self.size, self.cutn, self.cut_pow, self.padding = size, cutn, cut_pow, padding
        self.augmentations = set(augmentations)
        self.noise = noise
        self.transform = self.device_transform  # Generation swaps in a compiled version on a GPU
        n, augs = cutn, self.augmentations
        # The draws after the boxes, in the order they are made: (name, shape).
        self._layout: list[tuple[str, tuple[int, ...]]] = []
        if augs & {"Af", "Ro"}:
            self._layout.append(("angle", (n,)))
        if "Af" in augs:
            self._layout += [("shift", (n, 2)), ("shear", (n,))]
        if "Fl" in augs:
            self._layout.append(("flip", (n,)))
        if "Ji" in augs:
            self._layout.append(("jitter", (3, n, 1, 1, 1)))
        if "Er" in augs:
            self._layout += [(name, (n,)) for name in ("area", "aspect", "top", "left", "chosen")]
        if "Gn" in augs:
            self._layout.append(("noise_scale", (n, 1, 1, 1)))

    def __call__(self, image: torch.Tensor, generator: torch.Generator, batched: bool | None = None) -> torch.Tensor:
        """Cutouts of `image` from `generator`'s stream; `batched` (default: on any device but the CPU) makes
        them by `transform` from one packed tensor of draws rather than by a pooling loop."""
        if batched is None:
            batched = image.device.type != "cpu"
        if not batched:
            sizes, x0, y0, draws, noise = self._draw(image.shape, generator, image.device, image.dtype)
            cutouts = pool_boxes(image, sizes, x0, y0, self.size, batched=False)
            return self.augment(cutouts, dict(zip((name for name, _ in self._layout), draws)), noise)
        return self.transform(image, *self.draw(image.shape, generator, image.device, image.dtype))

    def draw(self, shape, generator: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32):
        """A step's draws for cutouts of an image of `shape` [1, C, H, W] on `device`, as `device_transform`
        takes them: (packed, noise). The boxes and the augmentations' numbers travel in one copy."""
        sizes, x0, y0, draws, noise = self._draw(shape, generator, device, dtype)
        return to_device(torch.cat([sizes, x0, y0, *(d.flatten() for d in draws)]), device), noise

    def _draw(self, shape, generator: torch.Generator, device: torch.device, dtype: torch.dtype):
        _, channels, height, width = shape
        n = self.cutn
        # 1. Boxes (on the CPU): sizes by cut_pow, offsets uniform; each pooled to the CLIP input size.
        max_size = min(width, height)
        min_size = min(width, height, self.size)
        sizes = (torch.rand(n, generator=generator) ** self.cut_pow * (max_size - min_size) + min_size).floor()
        x0 = (torch.rand(n, generator=generator) * (width - sizes + 1)).floor()
        y0 = (torch.rand(n, generator=generator) * (height - sizes + 1)).floor()
        # 2. The augmentations' numbers, then the noise (from the same stream on the CPU; on a GPU drawn
        #    there from a generator seeded by one draw of it, so the noise is not copied each step).
        draws = [torch.rand(*shape, generator=generator) for _, shape in self._layout]
        noise = None
        if "Gn" in self.augmentations:
            noise = randn((n, channels, self.size, self.size), generator, device, dtype)
        return sizes, x0, y0, draws, noise

    def device_transform(self, image: torch.Tensor, packed: torch.Tensor, noise: torch.Tensor | None):
        """Pooling and augmentations from the step's draws, packed in one flat tensor on the device."""
        n = self.cutn
        sizes, x0, y0 = packed[:3 * n].view(3, n)
        draws, offset = {}, 3 * n
        for name, shape in self._layout:
            count = math.prod(shape)
            draws[name] = packed[offset:offset + count].view(shape)
            offset += count
        boxes = torch.stack([sizes, x0, y0]).long()
        return self.augment(pool_boxes(image, boxes[0], boxes[1], boxes[2], self.size), draws, noise)

    def augment(self, cutouts: torch.Tensor, draws: dict[str, torch.Tensor], noise: torch.Tensor | None):
        """Geometry (flip, rotation, shift and shear as one affine grid per cutout), then colour jitter,
        erasing and noise, each batched over the cutouts."""
        if self.augmentations & {"Af", "Ro", "Fl"}:
            cutouts = _affine(cutouts, draws, self.padding)
        if "jitter" in draws:
            cutouts = _jitter(cutouts, draws["jitter"])
        if "area" in draws:
            cutouts = _erase(cutouts, draws)
        if noise is not None:
            cutouts = cutouts + draws["noise_scale"] * self.noise * noise
        return cutouts


def _affine(x: torch.Tensor, draws: dict[str, torch.Tensor], padding: str = "zeros") -> torch.Tensor:
    """Flip, rotate, shift and shear each cutout. What comes in past the edge: black ("zeros", as in
    nerdyrodent's VQGAN-CLIP), the edge pixels repeated ("border") or mirrored ("reflection"). Black
    corners are a strong feature of their own: on the shapes demo they cut the guiding CLIPs' score of a
    clean scene's reconstruction from 0.83 to 0.37, below the loop's blobs (benchmarks/RESULTS.md,
    "Seventh round")."""
    n = x.shape[0]
    angle = (draws["angle"] * 2 - 1) * math.radians(15) if "angle" in draws else torch.zeros(n, device=x.device)
    shift = (draws["shift"] * 2 - 1) * 0.2 if "shift" in draws else torch.zeros(n, 2, device=x.device)  # +-10%
    shear = (draws["shear"] * 2 - 1) * math.radians(5) if "shear" in draws else torch.zeros(n, device=x.device)
    scale_x = torch.where(draws["flip"] < 0.5, -1.0, 1.0) if "flip" in draws else torch.ones(n, device=x.device)
    cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
    theta = torch.stack([
        torch.stack([cos * scale_x, -sin + cos * tan, shift[:, 0]], 1),
        torch.stack([sin * scale_x, cos + sin * tan, shift[:, 1]], 1),
    ], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def pool_boxes(image: torch.Tensor, sizes: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, out: int,
               batched: bool = True) -> torch.Tensor:
    """Square boxes (side `sizes`, corner `x0`, `y0`; CPU tensors) of image [1, C, H, W], each
    adaptive-average-pooled to out x out: [n, C, out, out]."""
    if not batched:
        return torch.cat([
            F.adaptive_avg_pool2d(image[:, :, y:y + s, x:x + s], out)
            for s, x, y in zip(sizes.int().tolist(), x0.int().tolist(), y0.int().tolist())
        ])
    boxes = torch.stack([sizes, x0, y0]).long()
    if boxes.device != image.device:
        boxes = to_device(boxes, image.device)  # one small copy, no wait
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


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device, dtype: torch.dtype):
    """Normal noise of `shape`, seeded by the CPU `generator`. On the CPU it is drawn from the generator
    itself; elsewhere it is drawn on the device, from a generator seeded by one draw of it (no copy of the
    noise to the device each step)."""
    if device.type == "cpu":
        return torch.randn(shape, generator=generator).to(dtype)
    seed = int(torch.randint(2 ** 62, (1,), generator=generator))
    device_generator = torch.Generator(device).manual_seed(seed)
    return torch.randn(shape, generator=device_generator, device=device, dtype=dtype)


def _jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by a factor in [0.9, 1.1] per cutout (factors: the
    draws [3, n, 1, 1, 1] in [0, 1))."""
    brightness, contrast, saturation = (1 + (factors * 2 - 1) * 0.1).to(x.dtype)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    # Luma from Python-number weights: a weight tensor made here would be a host-to-device copy that waits.
    gray = x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
    return (x - gray) * saturation + gray


def _erase(x: torch.Tensor, draws: dict[str, torch.Tensor], p: float = 0.5) -> torch.Tensor:
    """Blank one random rectangle (2-20% of the area) in about half the cutouts."""
    n, _, h, w = x.shape
    area = draws["area"] * 0.18 + 0.02
    aspect = torch.exp((draws["aspect"] * 2 - 1) * math.log(3))
    eh = (area * aspect).sqrt().clamp(max=1) * h
    ew = (area / aspect).sqrt().clamp(max=1) * w
    top = draws["top"] * (h - eh)
    left = draws["left"] * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top.view(n, 1, 1)) & (ys < (top + eh).view(n, 1, 1)) & \
             (xs >= left.view(n, 1, 1)) & (xs < (left + ew).view(n, 1, 1))
    chosen = (draws["chosen"] < p).view(n, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    return x.masked_fill(mask, 0.0)
