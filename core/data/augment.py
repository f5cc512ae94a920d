"""The paper's two-view SimCLR augmentation, done on whole batches of tensors.

Why batched: per-image PIL/torchvision transforms in DataLoader workers cost more CPU than the model on a small
GPU run and starve it. Here one batch of uint8 tiles (on any device) becomes 2B augmented views with a handful of
batched ops: one ``grid_sample`` for crop + flip + resize, one 3x3 colour matrix per view (brightness, contrast,
saturation, hue, grayscale folded together), two batched matrix products for the separable blur.

Random numbers are drawn on the CPU from the given generator, so a run is reproducible from (seed, step) and the
views do not depend on the device. Differences from torchvision, on purpose: colour ops are composed as one affine
map and clamped once at the end (torchvision clamps after each op), hue is a rotation about the grey axis in YIQ
(torchvision rotates HSV hue), and crops are continuous rather than whole pixels. Vertical flips and 90-degree
rotations are not in the paper and are left out.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..imaging.bands import RGB, band_norm, rgb_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)
_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def check_layout(images: Tensor, channels: int) -> None:
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"expected images of shape (B, {channels}, H, W), got {tuple(images.shape)}")


def to_float(images: Tensor, channels: int = 3) -> Tensor:
    """uint8 (or float in [0, 1]) (B, C, H, W) to float32 in [0, 1]; ValueError for another layout."""
    check_layout(images, channels)
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.float()


def halve(x: Tensor) -> Tensor:
    """``F.avg_pool2d(x, 2)`` bit for bit (its sum order: row by row, then / 4) in about two thirds of its CPU time:
    the pyramid step of the two-view crop, the largest cost of a CPU step's augmentation."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    out = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
    return out.add_(x[..., 1::2, 0::2]).add_(x[..., 1::2, 1::2]).div_(4)


def halve_to_float(x: Tensor) -> Tensor:
    """The 2x2 means of uint8 tiles as floats in [0, 1], read from the tiles themselves: each block summed as integers
    (exact) and divided once, so the full-size float copy of the batch (the largest buffer of a CPU step's
    augmentation) is never made. That is the correctly rounded mean: within 1.2e-7 (two ulps) of
    ``halve(to_float(x))``, which rounds at each of its additions; in a trainer's step it took a third of the time of
    four strided float conversions (``bench/train.py``). Float input: ``halve`` of it."""
    if x.dtype != torch.uint8:
        return halve(x.float())
    if x.ndim == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return _halve_channels_last(x)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w].contiguous()  # a copy only for an odd side or another memory layout (uint8: a quarter's size)
    lead = x.shape[:-2]
    pairs = x.view(*lead, h // 2, 2, w)
    rows = pairs[..., 0, :].to(torch.int16) + pairs[..., 1, :]  # row pairs: int16 holds 2 x 255
    cols = rows.view(*lead, h // 2, w // 2, 2)
    return (cols[..., 0] + cols[..., 1]).float().div_(1020)  # 4 x 255: one rounding


def _halve_channels_last(x: Tensor) -> Tensor:
    """``halve_to_float`` of channels-last tiles (a cache's layout), summed in that layout: copying them to
    (B, C, H, W) first cost as much as the sums. The result is channels-last too."""
    b, c = x.shape[:2]
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    y = x.permute(0, 2, 3, 1)[:, :2 * h, :2 * w].contiguous()  # a view unless a side is odd
    pairs = y.view(b, h, 2, w, 2 * c)  # a row pair; each row as w pixel pairs of 2c values
    rows = pairs[:, :, 0].to(torch.int16) + pairs[:, :, 1]
    return (rows[..., :c] + rows[..., c:]).float().div_(1020).permute(0, 3, 1, 2)


def band_jitter(v: Tensor, brightness: Tensor, contrast: Tensor) -> Tensor:
    """Brightness then contrast (about the band's own mean) per view, for bands without a colour meaning (NIR...)."""
    y = v * brightness.view(-1, 1, 1, 1)
    mean = y.mean(dim=(2, 3), keepdim=True)
    return (contrast.view(-1, 1, 1, 1) * (y - mean) + mean).clamp_(0, 1)


def split_colour(v: Tensor, rgb: tuple[int, int, int] | None, colour_fn, other_fn) -> Tensor:
    """``colour_fn`` on the R, G, B channels (3x3 colour maps mean something only there), ``other_fn`` on the rest."""
    c = v.shape[1]
    if rgb == (0, 1, 2) and c == 3:
        return colour_fn(v)
    out = v.clone()
    rest = [i for i in range(c) if rgb is None or i not in rgb]
    if rgb is not None:
        out[:, list(rgb)] = colour_fn(v[:, list(rgb)])
    if rest:
        out[:, rest] = other_fn(v[:, rest])
    return out


@functools.lru_cache(maxsize=64)
def _const(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32, inverse: bool = False) -> Tensor:
    """A constant on a device, made once: a fresh ``torch.tensor(.., device=cuda)`` every step is a copy from pageable
    host memory, which waits for the GPU (and ``linalg.inv`` on the GPU reads its error flag back)."""
    t = torch.tensor(values, dtype=dtype)
    return (torch.linalg.inv(t) if inverse else t).to(device)


def hue_saturation_matrices(angle: Tensor, saturation: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample 3x3 colour maps: hue as a rotation about the grey axis (in YIQ), saturation as a blend with luma."""
    n, dev = angle.shape[0], angle.device
    eye = torch.eye(3, device=dev).expand(n, 3, 3)
    grey = _const(_LUMA, dev).expand(3, 3)
    t, t_inv = _const(_RGB2YIQ, dev), _const(_RGB2YIQ, dev, inverse=True)
    rot = torch.zeros(n, 3, 3, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = angle.cos(), -angle.sin()
    rot[:, 2, 1], rot[:, 2, 2] = angle.sin(), angle.cos()
    hue_m = t_inv @ rot @ t
    sat_m = saturation.view(n, 1, 1) * eye + (1 - saturation).view(n, 1, 1) * grey
    return hue_m, sat_m


def normalise(x: Tensor, bands: Sequence[str] | None = None) -> Tensor:
    """(B, C, H, W) float in [0, 1] to what every encoder here sees: R, G, B ImageNet-normalised, other bands by
    ``core.imaging.bands.band_norm``. The one place of it."""
    if bands is None:
        mean_l, std_l = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        mean_l, std_l = band_norm(bands)
    c = len(mean_l)
    mean = _const(tuple(mean_l), x.device, x.dtype).view(1, c, 1, 1)
    std = _const(tuple(std_l), x.device, x.dtype).view(1, c, 1, 1)
    return (x - mean) / std




class TwoViewAugment(nn.Module):
    """Two random views of every image: random resized crop + horizontal flip, colour distortion, grayscale,
    Gaussian blur, ImageNet normalisation (SimCLR, Chen et al. 2020, as used by the FALSE paper).

    Args:
        output_size: side of each square view, pixels.
        crop_scale, crop_ratio: area fraction and aspect-ratio range of the crop (torchvision semantics).
        color_strength: s; brightness, contrast and saturation factors in [1 - 0.8s, 1 + 0.8s], hue in
            [-0.2s, 0.2s] of a full turn; applied with ``color_prob``.
        gray_prob: probability of converting a view to grey (luma replicated).
        blur_prob, blur_sigma: probability and sigma range (output pixels) of the Gaussian blur; the kernel is
            about 10% of the view side, odd.
        flip_prob: probability of a horizontal flip.
        bands: the channels' names (default R, G, B). Crops, flips and blur act on every band; the colour map and
            grayscale only on R, G, B; other bands (NIR, ...) get the view's brightness and contrast factors alone.

    Example::

        >>> aug = TwoViewAugment(output_size=96)
        >>> views, ids = aug(images_uint8, indices, torch.Generator().manual_seed(step))
        >>> views.shape  # (2B, 3, 96, 96); rows [0, B) are view 1, rows [B, 2B) view 2; ids = cat([indices] * 2)
    """

    def __init__(self, output_size: int = 96, crop_scale: tuple[float, float] = (0.2, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), color_strength: float = 1.0,
                 color_prob: float = 0.8, gray_prob: float = 0.2, blur_prob: float = 0.5,
                 blur_sigma: tuple[float, float] = (0.1, 2.0), flip_prob: float = 0.5,
                 bands: Sequence[str] | None = None):
        super().__init__()
        self.bands = tuple(bands) if bands is not None else RGB
        self.rgb = rgb_positions(self.bands)
        if output_size < 8:
            raise ValueError(f"output_size must be at least 8, got {output_size}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        if not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {crop_ratio}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {blur_sigma}")
        for name, p in (("color_prob", color_prob), ("gray_prob", gray_prob), ("blur_prob", blur_prob),
                        ("flip_prob", flip_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if color_strength < 0:
            raise ValueError(f"color_strength must be >= 0, got {color_strength}")
        self.output_size = int(output_size)
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.color_strength, self.color_prob, self.gray_prob = color_strength, color_prob, gray_prob
        self.blur_prob, self.blur_sigma, self.flip_prob = blur_prob, tuple(blur_sigma), flip_prob
        self.kernel_size = max(3, int(0.1 * self.output_size) // 2 * 2 + 1)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, crop_scale={self.crop_scale}, color_strength="
                f"{self.color_strength}, blur_prob={self.blur_prob}, kernel_size={self.kernel_size}")

    # -------------------------------------------------------------- public
    def forward(self, images: Tensor, indices: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) uint8 (or float in [0, 1]) -> views float32 (2B, 3, S, S), ids (2B,): the trainer's views
        (``apply`` of the tiles as given, so uint8 tiles take the integer pyramid as in a training step)."""
        check_layout(images, len(self.bands))
        b, _, h, w = images.shape
        return self.apply(images, indices, self.sample(b, h, w, generator))

    def sample(self, b: int, h: int, w: int, generator: torch.Generator | None = None) -> dict:
        """Every random choice for two views of ``b`` images of ``h`` x ``w``, decided on the host (a trainer's
        loader thread draws them ahead of the step, so the step itself never reads a tensor to decide a branch)."""
        p = self._sample(2 * b, h, w, generator)
        max_level = int(math.log2(max(1, min(h, w) // self.output_size)))
        p["level"] = p["level"].clamp_max(max_level)
        p["blur_rows"] = p["blur"].nonzero().squeeze(1)
        p["full_rows"] = (p["level"] == 0).nonzero().squeeze(1)  # views cropped from the tiles at full size
        p["levels"] = sorted(set(p["level"].tolist()))
        return p

    def apply(self, images: Tensor, indices: Tensor, params: dict) -> tuple[Tensor, Tensor]:
        """The two views that ``params`` (from :meth:`sample`) describe: only device work, no host read."""
        check_layout(images, len(self.bands))
        b = images.shape[0]
        indices = torch.as_tensor(indices, dtype=torch.long)
        if indices.shape != (b,):
            raise ValueError(f"indices must have shape ({b},), got {tuple(indices.shape)}")
        p = {k: v.to(images.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in params.items()}
        views = self._crop(images, p)
        views = self._colour(views, p)
        views = self._blur(views, p)
        return normalise(views, self.bands), torch.cat([indices, indices])

    @torch.no_grad()
    def single_view(self, images: Tensor) -> Tensor:
        """Deterministic view for evaluation and embedding: whole image resized to S x S, normalised."""
        x = to_float(images, len(self.bands))
        s = self.output_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return normalise(x, self.bands)

    # -------------------------------------------------------------- random parameters (CPU)
    def _sample(self, n: int, h: int, w: int, g: torch.Generator | None) -> dict[str, Tensor]:
        """Every random number of a batch, drawn on the CPU in a fixed order."""
        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=g, dtype=torch.float32)

        tries = 10
        lo, hi = self.crop_scale
        scale = lo + (hi - lo) * rand(n, tries)
        log_r = math.log(self.crop_ratio[0]) + (math.log(self.crop_ratio[1]) - math.log(self.crop_ratio[0])) \
            * rand(n, tries)
        pos = rand(n, 2)
        flip = rand(n) < self.flip_prob
        color = rand(n) < self.color_prob
        s = self.color_strength
        factors = 1 + 0.8 * s * (2 * rand(n, 3) - 1)  # brightness, contrast, saturation
        factors = factors.clamp_min(0)
        hue = min(0.2 * s, 0.5) * (2 * rand(n) - 1)
        order = rand(n, 4).argsort(dim=1)  # random order of the four colour ops, per view
        gray = rand(n) < self.gray_prob
        blur = rand(n) < self.blur_prob
        sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * rand(n)

        # crop size: first of 10 tries that fits (torchvision's rule), else the whole image at a clamped ratio
        area, ratio = h * w * scale, log_r.exp()
        cw, ch = (area * ratio).sqrt(), (area / ratio).sqrt()
        ok = (cw <= w) & (ch <= h)
        first = ok.float().argmax(dim=1, keepdim=True)
        cw, ch = cw.gather(1, first).squeeze(1), ch.gather(1, first).squeeze(1)
        in_ratio = w / h
        fb_w = w if self.crop_ratio[0] <= in_ratio <= self.crop_ratio[1] else \
            (w if in_ratio < self.crop_ratio[0] else h * self.crop_ratio[1])
        fb_h = h if self.crop_ratio[0] <= in_ratio <= self.crop_ratio[1] else \
            (w / self.crop_ratio[0] if in_ratio < self.crop_ratio[0] else h)
        any_ok = ok.any(dim=1)
        cw = torch.where(any_ok, cw, torch.full_like(cw, fb_w))
        ch = torch.where(any_ok, ch, torch.full_like(ch, fb_h))
        x0 = pos[:, 0] * (w - cw)
        y0 = pos[:, 1] * (h - ch)
        sx, sy = cw / w, ch / h
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -sx, sx)
        theta[:, 0, 2] = 2 * (x0 + cw / 2) / w - 1
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = 2 * (y0 + ch / 2) / h - 1
        # pyramid level: halve the source until the crop is less than twice the view (cheap antialiasing)
        shrink = (cw * ch).sqrt() / self.output_size
        level = shrink.clamp_min(1).log2().floor().long()
        return dict(theta=theta, level=level, color=color, factors=factors, hue=hue, order=order, gray=gray,
                    blur=blur, sigma=sigma)

    def crop_grid(self, params: dict) -> Tensor:
        """The sampling grid of every view's crop (2B, S, S, 2): ``F.affine_grid`` of ``params["theta"]`` (to an
        ulp), made by broadcasting, since a crop has no rotation or shear (theta's off-diagonal terms are 0). On the
        CPU ``affine_grid``'s batched matrix product cost 15 times as much, more than all of the sampling."""
        theta, s = params["theta"], self.output_size
        n = theta.shape[0]
        base = (torch.arange(s, device=theta.device, dtype=theta.dtype) * 2 + 1) / s - 1  # pixel centres in [-1, 1]
        gx = theta[:, 0, 0, None] * base + theta[:, 0, 2, None]
        gy = theta[:, 1, 1, None] * base + theta[:, 1, 2, None]
        return torch.stack([gx[:, None, :].expand(n, s, s), gy[:, :, None].expand(n, s, s)], dim=-1)

    # -------------------------------------------------------------- ops (any device)
    def _crop(self, images: Tensor, p: dict) -> Tensor:
        """Crop + flip + resize of both views: one affine ``grid_sample`` per view and pyramid level.

        Sampling the whole batch and keeping the rows of that level wastes a little arithmetic on small
        outputs but never copies the large source images. Only the few views of a crop small enough for the tiles
        at full size (``full_rows``) read them as floats; the rest start from the half-size level, made straight
        from the tiles (``halve_to_float``): on the CPU the full-size float batch cost more than all the sampling.
        """
        b = images.shape[0]
        grid = self.crop_grid(p)
        level, levels = p["level"], p["levels"]
        full_rows = p.get("full_rows")

        def sampled(src: Tensor, g: Tensor) -> Tensor:
            return F.grid_sample(src, g, mode="bilinear", padding_mode="border", align_corners=False)

        if full_rows is None or levels == [0]:  # every view at full size (or params of an older sample)
            src = to_float(images, images.shape[1])
            out = torch.cat([sampled(src, g) for g in grid.split(b)]) if 0 in levels else None
        else:
            src, out = images, None
        for lvl in range(1, max(levels) + 1):
            src = halve_to_float(images) if lvl == 1 else halve(src)  # level 1 from the tiles in either path
            if lvl not in levels:
                continue
            views = torch.cat([sampled(src, g) for g in grid.split(b)])
            out = views if out is None else torch.where((level == lvl).view(-1, 1, 1, 1), views, out)
        if full_rows is not None and levels != [0] and 0 in levels:
            full = to_float(images[full_rows % b], images.shape[1])
            assert out is not None
            out = out.index_copy(0, full_rows, sampled(full, grid[full_rows]))
        assert out is not None
        return out

    def _colour(self, v: Tensor, p: dict) -> Tensor:
        """The colour map on R, G, B; brightness and contrast alone on other bands (only where colour applies)."""
        def others(x: Tensor) -> Tensor:
            bri, con = p["factors"][:, 0].to(x.device), p["factors"][:, 1].to(x.device)
            on = p["color"].to(x.device).view(-1, 1, 1, 1)
            return torch.where(on, band_jitter(x, bri, con), x)

        return split_colour(v, self.rgb, lambda x: self._rgb_colour(x, p), others)

    def _rgb_colour(self, v: Tensor, p: dict) -> Tensor:
        """Brightness, contrast, saturation, hue (random order) and grayscale as one affine colour map."""
        n, dev = v.shape[0], v.device
        eye = torch.eye(3, device=dev).expand(n, 3, 3)
        luma = _const(_LUMA, dev)
        grey = luma.expand(3, 3)  # every output channel = luma
        mean = v.mean(dim=(2, 3))  # per view, per channel: for contrast
        bri, con, sat = p["factors"].unbind(1)
        ang = 2 * math.pi * p["hue"]
        hue_m, sat_m = hue_saturation_matrices(ang, sat)
        bri_m = bri.view(n, 1, 1) * eye
        m, o = eye.clone(), torch.zeros(n, 3, device=dev)
        for k in range(4):
            op = p["order"][:, k]
            # contrast blends with the mean grey of the image as transformed so far
            cur_grey = ((m @ mean.unsqueeze(2)).squeeze(2) + o) @ luma
            con_m = con.view(n, 1, 1) * eye
            a = torch.stack([bri_m, con_m, sat_m, hue_m], dim=1)[torch.arange(n, device=dev), op]
            c = torch.where((op == 1).unsqueeze(1), ((1 - con) * cur_grey).unsqueeze(1).expand(n, 3),
                            torch.zeros(n, 3, device=dev))
            m, o = a @ m, (a @ o.unsqueeze(2)).squeeze(2) + c
        keep = p["color"].view(n, 1, 1)
        m, o = torch.where(keep, m, eye), torch.where(keep.view(n, 1), o, torch.zeros_like(o))
        g = p["gray"].view(n, 1, 1)
        m, o = torch.where(g, grey @ m, m), torch.where(g.view(n, 1), o @ grey.T, o)
        out = torch.bmm(m, v.flatten(2)) + o.unsqueeze(2)
        return out.view_as(v).clamp_(0, 1)

    def _blur(self, v: Tensor, p: dict) -> Tensor:
        """Gaussian blur of the selected views, reflect at the borders, separable: each view's kernel as an (S, S)
        matrix K, the view K X K^T. Two batched matrix products did it in a third of the time of grouped
        convolutions on the CPU (3 ms against 8 for 64 px views, 95 against 137 ms at 224 px)."""
        rows = p["blur_rows"]
        if rows.numel() == 0:
            return v
        k, s, dev = self.kernel_size, v.shape[-1], v.device
        r = k // 2
        t = torch.arange(-r, r + 1, device=dev)
        w = torch.exp(-0.5 * (t.to(v.dtype) / p["sigma"][rows].unsqueeze(1)) ** 2)
        w = w / w.sum(1, keepdim=True)  # (m, k)
        src = (torch.arange(s, device=dev).unsqueeze(1) + t).abs()  # (S, k): the pixel each tap reads, reflected
        src = torch.where(src > s - 1, 2 * (s - 1) - src, src)
        m = rows.numel()
        ker = torch.zeros(m, s, s, device=dev, dtype=v.dtype).scatter_add_(
            2, src.expand(m, s, k), w.unsqueeze(1).expand(m, s, k)).unsqueeze(1)  # (m, 1, S, S): ker[i, out, in]
        v = v.clone()
        v[rows] = ker @ v[rows] @ ker.transpose(-1, -2)  # the columns of each row, then the rows of each column
        return v
