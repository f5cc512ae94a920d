"""The canvas of a synthetic scene: classes, scene kinds, noise fields, the image/label/height buffers, the ground
and the light (cast shadows, final colour). The objects drawn on it are in ``core.data.synthetic_scene``.

Rendering is vectorised numpy: a height map acts as a z-buffer, and shadows are cast by marching the height map
towards the sun. Shadows darken the image but never change the label (the Potsdam convention).
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from PIL import Image

CLASSES: list[tuple[str, tuple[int, int, int]]] = [
    ("impervious surfaces", (255, 255, 255)),
    ("building", (0, 0, 255)),
    ("low vegetation", (0, 255, 255)),
    ("tree", (0, 255, 0)),
    ("car", (255, 255, 0)),
    ("clutter", (255, 0, 0)),
]
IMPERVIOUS, BUILDING, LOW_VEG, TREE, CAR, CLUTTER = range(6)
GENERATOR_VERSION = 1  # bump when the look of the scenes changes (recorded in meta.json)

# Scene kinds: how often each occurs and what it holds. Ranges are [low, high) for counts and fractions.
_KINDS = {  # p, roads, paths, plazas, lots, building tries, trees, clutter, soil fraction, traffic
    "downtown": dict(p=.16, roads=(1, 4), paths=(0, 1), plazas=(1, 5), lots=(0, 1), tries=70, trees=(0, 8),
                     clutter=(0, 3), soil=(0, .08), traffic=1.4),
    "urban": dict(p=.24, roads=(2, 5), paths=(0, 1), plazas=(1, 5), lots=(0, 2), tries=70, trees=(2, 16),
                  clutter=(0, 4), soil=(0, .15), traffic=1.2),
    "suburban": dict(p=.2, roads=(1, 3), paths=(0, 1), plazas=(0, 1), lots=(0, 1), tries=45, trees=(15, 45),
                     clutter=(0, 1), soil=(0, .08), traffic=.5),
    "park": dict(p=.1, roads=(0, 2), paths=(1, 4), plazas=(0, 1), lots=(0, 1), tries=3, trees=(15, 45),
                 clutter=(0, 1), soil=(0, .08), traffic=.25),
    "forest": dict(p=.08, roads=(0, 2), paths=(0, 2), plazas=(0, 1), lots=(0, 1), tries=0, trees=(110, 200),
                   clutter=(0, 1), soil=(0, .2), traffic=.25),
    "field": dict(p=.1, roads=(0, 2), paths=(0, 1), plazas=(0, 1), lots=(0, 1), tries=4, trees=(0, 8),
                  clutter=(2, 14), soil=(.45, .9), traffic=.25),
    "parking": dict(p=.12, roads=(1, 3), paths=(0, 1), plazas=(0, 1), lots=(1, 3), tries=6, trees=(4, 16),
                    clutter=(0, 3), soil=(0, .08), traffic=.8),
}


def _count(rng: np.random.Generator, kind: str, what: str) -> int:
    lo, hi = _KINDS[kind][what]
    return int(rng.integers(lo, hi)) if hi > lo else lo
_CAR_COLOURS = np.array([[.92, .92, .92], [.08, .08, .09], [.62, .63, .65], [.38, .39, .41], [.12, .2, .45],
                         [.6, .08, .07], [.85, .85, .8], [.2, .3, .22], [.75, .6, .2], [.3, .45, .7]], np.float32)


# ------------------------------------------------------------------------------------------------ noise fields
def _noise(rng: np.random.Generator, size: int, period: float) -> np.ndarray:
    """Smooth unit-variance noise with blobs about ``period`` pixels across (bicubic upsampled grid).

    PIL's resize, not a matmul: multithreaded BLAS on tiny matrices is slow and not bit-reproducible.
    """
    cells = max(2, round(size / period) + 1)
    grid = rng.standard_normal((cells, cells), dtype=np.float32)
    n = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC))
    return n / (n.std() + 1e-6)


def _fbm(rng: np.random.Generator, size: int, period: float, octaves: int = 3) -> np.ndarray:
    n = sum(0.5 ** k * _noise(rng, size, period / 2 ** k) for k in range(octaves))
    return n / (n.std() + 1e-6)


def _blur(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the last two axes (edges replicated): soft shadow edges, optics."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    r = p[..., 1:-1, :] * 2
    r += p[..., :-2, :]
    r += p[..., 2:, :]
    out = r[..., 1:-1] * 2
    out += r[..., :-2]
    out += r[..., 2:]
    out *= 1 / 16
    return out


def _rot(x: np.ndarray, y: np.ndarray, ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by ``ang`` (u along the object's long axis, v across)."""
    c, s = math.cos(ang), math.sin(ang)
    return x * c + y * s, y * c - x * s


# ------------------------------------------------------------------------------------------------ the canvas
def _rgb(rng: np.random.Generator, rgb, amount: float = 0.03) -> np.ndarray:
    """A colour jittered per scene/object, shaped (3, 1, 1) to broadcast over channel-first images."""
    c = np.asarray(rgb, np.float32) + rng.normal(0, amount, 3).astype(np.float32)
    return np.clip(c, 0, 1).reshape(3, 1, 1)


class _Scene:
    """Image (channel-first, float), label, height map (a z-buffer) and shared noise of one scene.

    Channel-first because numpy is slow on a trailing axis of length 3.
    """

    def __init__(self, rng: np.random.Generator, size: int):
        self.rng, self.size, self.half = rng, size, (size - 1) / 2
        self.img = np.zeros((3, size, size), np.float32)
        self.label = np.full((size, size), LOW_VEG, np.uint8)
        self.height = np.zeros((size, size), np.float32)
        self.occupied = np.zeros((size, size), bool)  # roads, lots and buildings: where no building may go
        self.asphalt = np.zeros((size, size), bool)
        c = np.arange(size, dtype=np.float32) - self.half  # pixel centres, origin at the tile centre
        self.ys, self.xs = c[:, None], c[None, :]
        self.fine = rng.standard_normal((size, size), dtype=np.float32)
        self.clump = _noise(rng, size, 3.5)
        self.mid = _noise(rng, size, 9)
        self.low = _fbm(rng, size, 90, octaves=2)
        self.low2 = _noise(rng, size, 50)
        az, self.sun_el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(35, 65))
        self.sun = (math.cos(az), math.sin(az))  # towards the sun, in the image plane

    def window(self, cx: float, cy: float, r: float):
        """Slices and local coordinates of the square of radius r around (cx, cy), clipped; None if outside."""
        x0, x1 = max(0, int(cx + self.half - r)), min(self.size, int(cx + self.half + r) + 2)
        y0, y1 = max(0, int(cy + self.half - r)), min(self.size, int(cy + self.half + r) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        return (slice(y0, y1), slice(x0, x1)), self.xs[:, x0:x1] - cx, self.ys[y0:y1] - cy

    def paint(self, sl, mask: np.ndarray, rgb: np.ndarray, label: int, height=None) -> None:
        """Draw where ``mask``; raised objects (height given) only where they are the highest thing."""
        if height is not None:
            height = np.broadcast_to(np.asarray(height, np.float32), mask.shape)
            mask = mask & (height >= self.height[sl])
            self.height[sl][mask] = height[mask]
        view = self.img[:, sl[0], sl[1]]
        view[:, mask] = rgb[:, mask] if rgb.shape[1:] == mask.shape else rgb.reshape(3, 1)
        self.label[sl][mask] = label

    def pos(self, margin: float = 0.0) -> tuple[float, float]:
        """A random point of the tile (extended by ``margin`` pixels beyond the border)."""
        x, y = self.rng.uniform(-self.half - margin, self.half + margin, 2)
        return float(x), float(y)

    def free(self, cx: float, cy: float) -> bool:
        iy, ix = int(round(cy + self.half)), int(round(cx + self.half))
        return not (0 <= iy < self.size and 0 <= ix < self.size and self.occupied[iy, ix])


# ------------------------------------------------------------------------------------------------ ground
def _ground(sc: _Scene, kind: str) -> None:
    """Lawn (low vegetation) with bare-soil patches (clutter), textured at several scales."""
    rng = sc.rng
    soil_frac = rng.uniform(*_KINDS[kind]["soil"])
    grass = _rgb(rng, [[.36, .47, .22], [.4, .5, .24], [.3, .42, .2], [.44, .5, .28]][rng.integers(4)])
    dry = _rgb(rng, [.52, .52, .33])
    soil = _rgb(rng, [[.5, .4, .31], [.44, .37, .3], [.58, .5, .42], [.4, .36, .33]][rng.integers(4)])
    dryness = np.clip(0.5 * sc.low2 - rng.uniform(0.0, 0.6), 0, 0.8)
    tex = 1 + 0.05 * sc.fine + 0.06 * sc.clump + 0.05 * sc.mid
    if kind == "park" and rng.random() < 0.6:  # mowing stripes
        u, _ = _rot(sc.xs, sc.ys, rng.uniform(0, math.pi))
        tex = tex + 0.045 * np.sign(np.sin(u * (math.pi / rng.uniform(6, 10))))
    lawn = (grass + (dry - grass) * dryness) * tex
    soil_tex = 1 + 0.1 * sc.mid + 0.07 * sc.fine
    if kind == "field" and rng.random() < 0.6:  # ploughed furrows
        u, _ = _rot(sc.xs, sc.ys, rng.uniform(0, math.pi))
        soil_tex = soil_tex + 0.08 * np.sin(u * (2 * math.pi / rng.uniform(3.5, 6)))
    thr = NormalDist().inv_cdf(1 - float(np.clip(soil_frac, 1e-3, 1 - 1e-3)))
    blend = np.clip((sc.low - thr) * 5 + 0.5, 0, 1)
    sc.img[:] = lawn + (soil * soil_tex - lawn) * blend
    sc.label[sc.low > thr] = CLUTTER
    if kind == "downtown":  # paved courtyards with patches of lawn
        paved = sc.low2 < NormalDist().inv_cdf(rng.uniform(0.5, 0.85))
        pave = _rgb(rng, [[.62, .6, .57], [.55, .55, .56], [.66, .6, .54]][rng.integers(3)]).reshape(3, 1)
        sc.img[:, paved] = pave * (1 + 0.05 * sc.fine + 0.04 * sc.mid)[paved]
        sc.label[paved] = IMPERVIOUS


# ------------------------------------------------------------------------------------------------ light
def _shadows(sc: _Scene) -> np.ndarray:
    """Cast shadows: a pixel is shaded if something higher blocks the ray towards the sun (height-map march)."""
    size, h = sc.size, sc.height
    shadow = np.zeros((size, size), bool)
    hmax = float(h.max())
    tan_el = math.tan(sc.sun_el)
    seen = set()
    for k in range(1, int(hmax / tan_el) + 2 if hmax > 0 else 0):
        dx, dy = int(round(k * sc.sun[0])), int(round(k * sc.sun[1]))
        if (dx, dy) in seen:
            continue
        seen.add((dx, dy))
        if abs(dx) >= size or abs(dy) >= size:
            break
        rise = math.hypot(dx, dy) * tan_el
        dst = (slice(max(0, -dy), size - max(0, dy)), slice(max(0, -dx), size - max(0, dx)))
        src = (slice(max(0, dy), size - max(0, -dy)), slice(max(0, dx), size - max(0, -dx)))
        shadow[dst] |= h[src] > h[dst] + rise
    return _blur(shadow.astype(np.float32))


def _finish(sc: _Scene) -> np.ndarray:
    """Shadows, scene-wide illumination and colour cast, haze, sensor noise and optics blur; to uint8 HWC."""
    rng = sc.rng
    shade = _shadows(sc)
    dark = np.array([0.38, 0.42, 0.52], np.float32).reshape(3, 1, 1) * rng.uniform(0.85, 1.2)  # bluish
    gain = (rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.035, 3))).astype(np.float32).reshape(3, 1, 1)
    haze = rng.uniform(0, 0.08)
    img = sc.img
    img *= 1 - shade * (1 - dark)
    img *= gain * (1 - haze)
    img += haze * np.array([0.7, 0.74, 0.8], np.float32).reshape(3, 1, 1)
    sharp = rng.uniform(0.1, 0.6)
    img = sharp * img + (1 - sharp) * _blur(img)
    img += rng.standard_normal(img.shape[1:], dtype=np.float32) * rng.uniform(0.006, 0.016)
    np.clip(img, 0, 1, out=img)
    img += rng.uniform(-0.12, 0.12) * img * (1 - img)  # a cheap gamma: x + k x (1 - x)
    img *= 255
    img += 0.5
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))
