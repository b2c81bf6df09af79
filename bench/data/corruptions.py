"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): the published files, and synthetic
stand-ins of the same corruptions for the smoke scale.

The release (https://zenodo.org/record/2535967, ``CIFAR-10-C.tar``) holds one
``<corruption>.npy`` per corruption, 50000×32×32×3 uint8: the 10000 CIFAR-10 test images
corrupted at severity 1, then at severity 2, …, 5 (rows [(s−1)·10000, s·10000)), and
``labels.npy`` with the labels of those rows (the test labels, once per severity block).
The standard benchmark uses 15 corruptions (RobustBench's ``CORRUPTIONS``); the release
also has 4 "extra" ones (speckle noise, Gaussian blur, spatter, saturate) kept out of it.

RobustBench evaluates corruption c at severity s on the first n images of that severity
block, without shuffling, and averages the 15 × 5 accuracies with equal weights.

The synthetic corruptions are simple torch re-creations of the 15 corruption types
(noise, blur, weather and digital families) on float images in [0, 1], parameterised
by severity 1–5 with parameter ladders of our own (not the published constants): they
exercise the measure at the smoke scale and are never a substitute for CIFAR-10-C.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MissingDataError
from .catalog import CIFAR10C_CORRUPTIONS

DIRNAME = "CIFAR-10-C"
ZENODO_URL = "https://zenodo.org/record/2535967"
SEVERITIES = (1, 2, 3, 4, 5)
N_PER_SEVERITY = 10000          # rows per severity block in the published files
IMAGE_SHAPE = (32, 32, 3)       # H, W, C as stored

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
#: The 15 corruptions of the benchmark (the same set as RobustBench's ``CORRUPTIONS``),
#: defined torch-free in the catalog so that planning can check the files.
CORRUPTIONS: tuple[str, ...] = CIFAR10C_CORRUPTIONS
if tuple(c for family in FAMILIES.values() for c in family) != CORRUPTIONS:
    raise AssertionError("FAMILIES must list the 15 CIFAR-10-C corruptions in catalog order")
#: In the release but not in the benchmark's mean.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


# --------------------------------------------------------------------------- published files

def files(root: Path, corruptions=CORRUPTIONS) -> list[Path]:
    """The files that evaluating ``corruptions`` reads: ``labels.npy`` and one .npy each."""
    d = Path(root) / DIRNAME
    return [d / "labels.npy"] + [d / f"{c}.npy" for c in corruptions]


def missing_files(root: Path, corruptions=CORRUPTIONS) -> list[Path]:
    return [p for p in files(root, corruptions) if not p.is_file()]


def check_files(root: Path, corruptions=CORRUPTIONS) -> Path:
    """The CIFAR-10-C directory under ``root``, or a :class:`MissingDataError` naming every
    missing file and where to get them."""
    root = Path(root)
    unknown = sorted(set(corruptions) - set(CORRUPTIONS) - set(EXTRA_CORRUPTIONS))
    if unknown:
        raise MissingDataError(f"CIFAR-10-C has no corruption(s) {unknown}; "
                               f"known: {', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")
    missing = missing_files(root, corruptions)
    if missing:
        listed = "\n".join(f"    {p}" for p in missing)
        raise MissingDataError(
            f"CIFAR-10-C is missing under the data root {root.resolve()} (set BENCH_DATA to change it); "
            f"absent file(s):\n{listed}\n"
            f"  To obtain it: download CIFAR-10-C.tar from {ZENODO_URL} (Hendrycks & Dietterich, 2019) "
            f"and extract it into the data root, giving {DIRNAME}/<corruption>.npy "
            f"(50000×32×32×3 uint8, severities 1–5 in blocks of 10000) and {DIRNAME}/labels.npy.")
    return root / DIRNAME


def _open(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise MissingDataError(f"{path} is missing; CIFAR-10-C is at {ZENODO_URL}") from None


def severity_size(root: Path, corruption: str) -> int:
    """Images per severity in ``<root>/CIFAR-10-C/<corruption>.npy`` (10000 in the release),
    read from the file's header."""
    check_files(root, [corruption])
    return _open(Path(root) / DIRNAME / f"{corruption}.npy").shape[0] // 5


def load_cifar10c(root: Path, corruption: str, severity: int, n: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images (default: all) of ``corruption`` at ``severity`` (1–5) from
    ``<root>/CIFAR-10-C/<corruption>.npy``, as RobustBench takes them (no shuffling), as
    uint8 N×3×32×32, and their int64 labels. Files are memory-mapped: only these rows are read.

    The block size is a fifth of the file's rows (10000 in the release). Labels are the
    same rows of ``labels.npy``; a labels file with one block only (the plain test labels)
    is accepted too. On the release both equal RobustBench's ``labels[:n]``, since the test
    labels repeat in every severity block.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    check_files(root, [corruption])
    d = Path(root) / DIRNAME
    images, labels = _open(d / f"{corruption}.npy"), _open(d / "labels.npy")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or images.shape[0] % 5:
        raise MissingDataError(f"{d / f'{corruption}.npy'} has shape {images.shape} and dtype {images.dtype}; "
                               f"CIFAR-10-C files are 5·N×32×32×3 uint8 (N = {N_PER_SEVERITY})")
    block = images.shape[0] // 5
    n = block if n is None else int(n)
    if not 0 < n <= block:
        raise ValueError(f"n must be in 1..{block} (images per severity in {d}), got {n}")
    start = (severity - 1) * block
    if labels.shape == (images.shape[0],):
        y = labels[start:start + n]
    elif labels.shape == (block,):
        y = labels[:n]
    else:
        raise MissingDataError(f"{d / 'labels.npy'} has shape {labels.shape}; expected ({images.shape[0]},) "
                               f"to match {corruption}.npy")
    x = np.ascontiguousarray(images[start:start + n].transpose(0, 3, 1, 2))
    return torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))


# --------------------------------------------------------------------------- synthetic corruptions

def corruption_generator(device: torch.device | str, seed: int, corruption: str, batch: int = 0
                         ) -> torch.Generator:
    """A generator that depends only on (seed, corruption, batch): every severity of a
    corruption draws the same random numbers, so severities differ only by their strength."""
    key = zlib.crc32(corruption.encode())
    return torch.Generator(device=device).manual_seed(
        (seed * 1_000_003 + key * 7919 + batch * 104_729) % (2**63 - 1))


def _rand(x: torch.Tensor, shape, g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=x.device, dtype=x.dtype)


def _randn(x: torch.Tensor, shape, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=x.device, dtype=x.dtype)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution with reflect padding; ``kernel`` is kh×kw (shared) or
    B×kh×kw (one per image)."""
    b, c, h, w = x.shape
    kernel = kernel.to(x.dtype)
    kh, kw = kernel.shape[-2:]
    ph, pw = kh // 2, kw // 2
    mode = "reflect" if ph < h and pw < w else "replicate"
    xp = F.pad(x, (pw, pw, ph, ph), mode=mode)
    if kernel.dim() == 2:
        return F.conv2d(xp, kernel.expand(c, 1, kh, kw), groups=c)
    weight = kernel[:, None].repeat_interleave(c, dim=0)          # (b·c)×1×kh×kw
    out = F.conv2d(xp.reshape(1, b * c, *xp.shape[2:]), weight, groups=b * c)
    return out.reshape(b, c, h, w)


def _gaussian_kernel(sigma: float, device, dtype=torch.float32) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    return k[:, None] * k[None, :]


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1, keepdim=True)


def _resample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _identity_grid(x: torch.Tensor) -> torch.Tensor:
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(x.shape[0], 2, 3)
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def _smooth_field(x: torch.Tensor, channels: int, coarse: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random field B×channels×H×W in about [−1, 1] (bicubic upsampling of noise)."""
    b, _, h, w = x.shape
    field = _rand(x, (b, channels, coarse, coarse), g) * 2 - 1
    return F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)


# Each corruption: (x in [0,1], parameter of its severity, generator) → image (clamped later).
# Ladders are ours: monotone in severity, roughly spanning "visible" to "hard".
LADDERS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.10, 0.12),            # σ
    "shot_noise": (500.0, 250.0, 120.0, 70.0, 40.0),              # photons at intensity 1
    "impulse_noise": (0.01, 0.03, 0.05, 0.08, 0.12),              # fraction of salt-and-pepper pixels
    "defocus_blur": (1.0, 1.5, 2.0, 2.5, 3.0),                    # disk radius (pixels)
    "glass_blur": ((0.5, 1), (0.55, 1.5), (0.6, 2), (0.65, 2.5), (0.7, 3)),  # (σ, max local shift)
    "motion_blur": (3, 5, 7, 9, 11),                              # streak length (pixels)
    "zoom_blur": (0.06, 0.10, 0.14, 0.18, 0.22),                  # largest zoom − 1
    "snow": ((0.01, 0.1), (0.02, 0.2), (0.03, 0.3), (0.045, 0.4), (0.06, 0.5)),  # (flake density, whitening)
    "frost": ((0.95, 0.25), (0.85, 0.4), (0.75, 0.5), (0.7, 0.6), (0.65, 0.7)),  # (image, frost) weights
    "fog": (0.3, 0.5, 0.7, 0.9, 1.2),                             # fog strength
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),                      # added to HSV value
    "contrast": (0.7, 0.55, 0.4, 0.28, 0.15),                     # contrast factor
    "elastic_transform": (0.75, 1.25, 1.75, 2.25, 2.75),          # displacement amplitude (pixels)
    "pixelate": (0.85, 0.7, 0.55, 0.4, 0.3),                      # resolution factor
    "jpeg_compression": (0.02, 0.04, 0.07, 0.10, 0.14),           # base quantisation step (8×8 DCT)
}


def _gaussian_noise(x, sigma, g):
    return x + sigma * _randn(x, x.shape, g)


def _shot_noise(x, photons, g):
    return torch.poisson(x * photons, generator=g) / photons


def _impulse_noise(x, amount, g):
    u = _rand(x, x.shape, g)
    return torch.where(u < amount / 2, torch.zeros_like(x), torch.where(u > 1 - amount / 2, torch.ones_like(x), x))


def _defocus_blur(x, radius, g):
    r = math.ceil(radius)
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    dist = (t[:, None] ** 2 + t[None, :] ** 2).sqrt()
    disk = (radius + 0.5 - dist).clamp(0, 1)                     # anti-aliased disk
    return _filter(x, disk / disk.sum())


def _glass_blur(x, param, g):
    sigma, shift = param
    b, c, h, w = x.shape
    kernel = _gaussian_kernel(sigma, x.device, x.dtype)
    y = _filter(x, kernel)
    # every pixel takes the value of a neighbour at most `shift` pixels away
    u = _rand(x, (b, 2, h, w), g) * 2 - 1
    dy = (u[:, 0] * shift).round().long()
    dx = (u[:, 1] * shift).round().long()
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx).clamp(0, w - 1)
    index = (rows * w + cols).reshape(b, 1, h * w).expand(b, c, h * w)
    y = y.reshape(b, c, h * w).gather(2, index).reshape(b, c, h, w)
    return _filter(y, kernel)


def _motion_blur(x, length, g):
    b = x.shape[0]
    r = length // 2
    angle = _rand(x, (b, 1, 1), g) * math.pi
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    v, u = t[:, None], t[None, :]                                 # rows, columns
    along = (u * angle.cos() + v * angle.sin()).abs()
    across = (-u * angle.sin() + v * angle.cos()).abs()
    kernel = (1 - across).clamp(min=0) * (along <= length / 2).to(x.dtype)
    return _filter(x, kernel / kernel.sum((1, 2), keepdim=True))


def _zoom_blur(x, zmax, g, steps: int = 4):
    out = x.clone()
    for k in range(1, steps + 1):
        z = 1 + zmax * k / steps
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]], device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        out = out + _resample(x, grid)
    return out / (steps + 1)


def _snow(x, param, g):
    density, whitening = param
    b, _, h, w = x.shape
    flakes = (_rand(x, (b, 1, h, w), g) < density).to(x.dtype)
    streak = torch.eye(3, device=x.device, dtype=x.dtype)         # short diagonal fall
    flakes = (_filter(flakes, streak) * 1.5).clamp(0, 1)
    whitened = torch.maximum(x, _gray(x) * 1.5 + 0.5).clamp(0, 1)
    return (1 - whitening) * x + whitening * whitened + flakes


def _frost(x, param, g):
    keep, frost = param
    b, _, h, w = x.shape
    ice = 0.5 + 0.5 * _smooth_field(x, 1, 4, g)                   # low-frequency sheen
    crystals = _filter((_rand(x, (b, 1, h, w), g) > 0.8).to(x.dtype), _gaussian_kernel(0.7, x.device, x.dtype))
    texture = (0.6 * ice + 1.6 * crystals).clamp(0, 1)
    return keep * x + frost * texture


def _fog(x, strength, g):
    b, _, h, w = x.shape
    field = sum(amp * _smooth_field(x, 1, size, g) for size, amp in ((2, 1.0), (4, 0.5), (8, 0.25)))
    lo = field.amin((2, 3), keepdim=True)
    hi = field.amax((2, 3), keepdim=True)
    field = (field - lo) / (hi - lo + 1e-6)
    top = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * field) * top / (top + strength)


def _brightness(x, delta, g):
    value = x.amax(1, keepdim=True)                               # HSV value; hue and saturation kept
    new = (value + delta).clamp(max=1)
    return torch.where(value > 1e-6, x * new / value.clamp(min=1e-6), new.expand_as(x))


def _contrast(x, factor, g):
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _elastic_transform(x, amplitude, g):
    h, w = x.shape[2:]
    disp = _smooth_field(x, 2, 4, g) * amplitude                  # pixels
    scale = torch.tensor([2 / w, 2 / h], device=x.device, dtype=x.dtype)
    return _resample(x, _identity_grid(x) + disp.permute(0, 2, 3, 1) * scale)


def _pixelate(x, factor, g):
    h, w = x.shape[2:]
    small = F.interpolate(x, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


def _dct_matrix(n: int, device, dtype) -> torch.Tensor:
    k = torch.arange(n, device=device, dtype=dtype)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] = m[0] / math.sqrt(2)
    return m                                                      # orthonormal DCT-II


def _jpeg_compression(x, step, g, block: int = 8):
    b, c, h, w = x.shape
    ph, pw = (-h) % block, (-w) % block
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") - 0.5
    H, W = xp.shape[2:]
    blocks = xp.reshape(b, c, H // block, block, W // block, block).transpose(3, 4)
    d = _dct_matrix(block, x.device, x.dtype)
    coeff = d @ blocks @ d.T
    k = torch.arange(block, device=x.device, dtype=x.dtype)
    q = step * (1 + k[:, None] + k[None, :])                      # coarser at high frequencies
    blocks = d.T @ ((coeff / q).round() * q) @ d
    out = blocks.transpose(3, 4).reshape(b, c, H, W) + 0.5
    return out[:, :, :h, :w]


SYNTHETIC: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
if not set(SYNTHETIC) == set(CORRUPTIONS) == set(LADDERS):
    raise AssertionError("every corruption needs a synthetic version and a severity ladder")


def corrupt(x: torch.Tensor, corruption: str, severity: int, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Synthetic ``corruption`` at ``severity`` (1–5) of float images B×C×H×W in [0, 1]
    (uint8 images are read as /255); returns float images in [0, 1] of the same shape.
    Deterministic given the generator's state (default: seed 0 on the images' device)."""
    if corruption not in SYNTHETIC:
        raise ValueError(f"no synthetic corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(0)
    out = SYNTHETIC[corruption](x, LADDERS[corruption][severity - 1], generator)
    return out.clamp(0, 1)
