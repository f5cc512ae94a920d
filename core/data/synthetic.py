"""Synthetic aerial-like scenes with per-pixel ISPRS Potsdam labels, and a cached dataset of them.

Why: the workbench must run end to end on a fresh laptop with no downloads. These scenes are cheap, deterministic
and look enough like a top-down orthophoto (roads with markings, roofs with cast shadows, trees, cars) that
contrastive pretraining and segmentation have real structure to learn. Scenes come in kinds (urban, suburban,
park, forest, field, parking) so tiles differ in their dominant class and same-class "false negatives" are common,
as in real imagery.

Rendering is vectorised numpy: every object is drawn in a small window from coordinate grids, a height map acts
as a z-buffer, and shadows are cast by marching the height map towards the sun. Shadows darken the image but
never change the label (the Potsdam convention). Sizes are in pixels at roughly 0.4 m per pixel.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .paths import DataError, data_root, publish_dir, temp_dir_for

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

_KINDS = ("urban", "suburban", "park", "forest", "field", "parking")
_KIND_P = (0.30, 0.24, 0.14, 0.10, 0.10, 0.12)
_CAR_COLOURS = np.array([[.92, .92, .92], [.08, .08, .09], [.62, .63, .65], [.38, .39, .41], [.12, .2, .45],
                         [.6, .08, .07], [.85, .85, .8], [.2, .3, .22], [.75, .6, .2], [.3, .45, .7]], np.float32)


# ------------------------------------------------------------------------------------------------ noise fields
@functools.lru_cache(maxsize=64)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """Rows of Gaussian weights that upsample a (cells+3)^2 random grid to a smooth size^2 field."""
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * cells
    knots = np.arange(-1, cells + 2, dtype=np.float32)
    w = np.exp(-0.5 * ((pos[:, None] - knots[None, :]) / 0.6) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _noise(rng: np.random.Generator, size: int, period: float) -> np.ndarray:
    """Smooth unit-variance noise with blobs about ``period`` pixels across (two small matmuls)."""
    a = _interp_matrix(size, max(1, round(size / period)))
    n = a @ rng.standard_normal((a.shape[1], a.shape[1]), dtype=np.float32) @ a.T
    return n / (n.std() + 1e-6)


def _fbm(rng: np.random.Generator, size: int, period: float, octaves: int = 3) -> np.ndarray:
    n = sum(0.5 ** k * _noise(rng, size, period / 2 ** k) for k in range(octaves))
    return n / (n.std() + 1e-6)


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean filter with edge replication, for soft shadow edges and optics blur."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    r = p[:-2] + p[1:-1] + p[2:]
    return (r[:, :-2] + r[:, 1:-1] + r[:, 2:]) / 9.0


def _rot(x: np.ndarray, y: np.ndarray, ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by ``ang`` (u along the object's long axis, v across)."""
    c, s = math.cos(ang), math.sin(ang)
    return x * c + y * s, y * c - x * s


# ------------------------------------------------------------------------------------------------ the canvas
class _Scene:
    """Image, label, height map and shared noise of one scene being drawn."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.rng, self.size = rng, size
        self.img = np.zeros((size, size, 3), np.float32)
        self.label = np.full((size, size), LOW_VEG, np.uint8)
        self.height = np.zeros((size, size), np.float32)
        self.occupied = np.zeros((size, size), bool)  # roads, lots and buildings: where no building may go
        self.asphalt = np.zeros((size, size), bool)
        c = np.arange(size, dtype=np.float32) - (size - 1) / 2  # pixel centres, origin at the tile centre
        self.ys, self.xs = c[:, None], c[None, :]
        self.fine = rng.standard_normal((size, size), dtype=np.float32)
        self.clump = _noise(rng, size, 3.5)
        self.mid = _noise(rng, size, 9)
        self.low = _fbm(rng, size, 90)
        self.low2 = _fbm(rng, size, 60)
        az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(35, 65))
        self.sun = (math.cos(az), math.sin(az))  # towards the sun, image plane
        self.sun_el = el
        self.half = (size - 1) / 2

    def window(self, cx: float, cy: float, r: float):
        """Slices and local coordinates of the square of radius r around (cx, cy), clipped; None if outside."""
        x0, x1 = max(0, int(cx + self.half - r)), min(self.size, int(cx + self.half + r) + 2)
        y0, y1 = max(0, int(cy + self.half - r)), min(self.size, int(cy + self.half + r) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        return (slice(y0, y1), slice(x0, x1)), self.xs[:, x0:x1] - cx, self.ys[y0:y1] - cy

    def paint(self, sl, mask: np.ndarray, rgb: np.ndarray, label: int, height=None) -> np.ndarray:
        """Draw where ``mask``; raised objects (height given) only where they are the highest thing."""
        if height is not None:
            height = np.broadcast_to(np.asarray(height, np.float32), mask.shape)
            mask = mask & (height >= self.height[sl])
        if rgb.ndim == 3:
            self.img[sl][mask] = rgb[mask]
        else:
            self.img[sl][mask] = rgb
        self.label[sl][mask] = label
        if height is not None:
            self.height[sl][mask] = height[mask]
        return mask

    def pos(self, margin: float = 0.0) -> tuple[float, float]:
        """A random point of the tile (extended by ``margin`` pixels beyond the border)."""
        return tuple(self.rng.uniform(-self.half - margin, self.half + margin, 2))


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.04) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3).astype(np.float32), 0, 1)


# ------------------------------------------------------------------------------------------------ ground
def _ground(sc: _Scene, kind: str) -> None:
    """Lawn with bare-soil patches (low vegetation / clutter), textured at several scales."""
    rng = sc.rng
    soil_frac = {"field": rng.uniform(0.45, 0.9), "urban": rng.uniform(0.0, 0.15),
                 "forest": rng.uniform(0.0, 0.2)}.get(kind, rng.uniform(0.0, 0.08))
    grass = _jitter(rng, rng.choice([[.36, .47, .22], [.42, .5, .25], [.3, .42, .2], [.5, .52, .3]]), 0.03)
    dry = _jitter(rng, [.58, .55, .36], 0.03)
    soil = _jitter(rng, rng.choice([[.55, .46, .36], [.48, .41, .33], [.62, .55, .45]]), 0.03)
    tex = 1 + 0.05 * sc.fine + 0.06 * sc.clump + 0.05 * sc.mid
    dryness = np.clip(0.5 + 0.5 * sc.low2 - rng.uniform(0.2, 0.8), 0, 1)[..., None]
    lawn = grass + (dry - grass) * dryness
    if kind == "park" and rng.random() < 0.6:  # mowing stripes
        u, _ = _rot(sc.xs, sc.ys, rng.uniform(0, math.pi))
        lawn = lawn * (1 + 0.045 * np.sign(np.sin(u * math.pi / rng.uniform(6, 10))))[..., None]
    soil_img = soil * (1 + 0.08 * sc.mid + 0.06 * sc.fine)[..., None]
    if kind == "field" and rng.random() < 0.6:  # ploughed furrows
        u, _ = _rot(sc.xs, sc.ys, rng.uniform(0, math.pi))
        soil_img = soil_img * (1 + 0.07 * np.sin(u * 2 * math.pi / rng.uniform(3.5, 6)))[..., None]
    thr = NormalDist().inv_cdf(1 - float(np.clip(soil_frac, 1e-3, 1 - 1e-3)))
    blend = np.clip((sc.low - thr) * 4 + 0.5, 0, 1)[..., None]
    sc.img[:] = (lawn + (soil_img - lawn) * blend) * tex[..., None]
    sc.label[sc.low > thr] = CLUTTER


# ------------------------------------------------------------------------------------------------ roads
def _roads(sc: _Scene, kind: str, theta: float) -> list[tuple]:
    """A few straight roads on the scene's grid, some crossing; sidewalks, markings, zebra crossings."""
    rng = sc.rng
    n = {"urban": rng.integers(2, 5), "suburban": rng.integers(1, 3), "park": rng.integers(0, 2),
         "forest": rng.integers(0, 2), "field": rng.integers(0, 2), "parking": rng.integers(1, 3)}[kind]
    n_paths = rng.integers(1, 4) if kind == "park" else int(kind == "forest" and rng.random() < 0.5)
    roads = []
    for i in range(n + n_paths):
        path = i >= n
        ang = theta + (math.pi / 2 if i % 2 else 0.0)
        if rng.random() < (0.4 if path else 0.1):
            ang = rng.uniform(0, math.pi)
        off = rng.uniform(-0.42, 0.42) * sc.size if i else rng.uniform(-0.2, 0.2) * sc.size
        width = rng.uniform(3, 6) if path else rng.uniform(10, 26)
        walk = 0.0 if path or kind in ("field", "forest") else rng.uniform(3, 7)
        along, d = _rot(sc.xs, sc.ys, ang)
        d = d - off
        roads.append(dict(ang=ang, off=off, w=width, walk=walk, d=d, along=along, path=path))

    walk_rgb = _jitter(rng, rng.choice([[.62, .6, .56], [.66, .62, .56], [.55, .55, .55]]), 0.03)
    for r in roads:  # sidewalks first, so crossing asphalt covers them
        m = np.abs(r["d"]) < r["w"] / 2 + r["walk"]
        sc.paint((slice(None), slice(None)), m, walk_rgb * (1 + 0.05 * sc.fine + 0.04 * sc.mid)[..., None],
                 IMPERVIOUS)
    asphalt = _jitter(rng, [.36, .36, .37], 0.04) * rng.uniform(0.8, 1.15)
    path_rgb = _jitter(rng, rng.choice([[.7, .66, .58], [.6, .57, .52]]), 0.03)
    for r in roads:
        ad = np.abs(r["d"])
        m = ad < r["w"] / 2
        if r["path"]:
            sc.paint((slice(None), slice(None)), m, path_rgb * (1 + 0.06 * sc.fine)[..., None], IMPERVIOUS)
            continue
        tracks = np.exp(-(((ad - r["w"] / 4) / (r["w"] / 12)) ** 2))
        tex = 1 + 0.04 * sc.fine + 0.05 * sc.mid - 0.06 * tracks - 0.08 * (sc.low2 > 1.3)
        sc.paint((slice(None), slice(None)), m, asphalt * tex[..., None], IMPERVIOUS)
        sc.asphalt |= m
        if r["walk"] > 0:  # curb line
            curb = np.abs(ad - r["w"] / 2) < 0.6
            sc.img[curb] = sc.img[curb] * 0.6 + 0.35
    for i, r in enumerate(roads):
        sc.occupied |= np.abs(r["d"]) < r["w"] / 2 + r["walk"] + 1.5
        if r["path"] or r["w"] < 12:
            continue
        ad, along = np.abs(r["d"]), r["along"]
        period = rng.uniform(9, 14)
        dash = (along % period) < period * 0.5
        if r["w"] >= 20:
            mark = (ad < 0.55) | ((np.abs(ad - r["w"] / 4) < 0.5) & dash)
        else:
            mark = (ad < 0.55) & dash
        if rng.random() < 0.6:
            mark |= np.abs(ad - (r["w"] / 2 - 1.5)) < 0.5
        others = [o for j, o in enumerate(roads) if j != i and not o["path"]]
        for o in others:
            band = np.abs(o["d"]) - (o["w"] / 2 + o["walk"])
            mark &= band > 0
            if rng.random() < 0.5:  # zebra crossing just outside the crossing road
                mark |= (band > 1.5) & (band < 6) & (ad < r["w"] / 2 - 1) & ((r["d"] % 2.6) < 1.3)
        mark &= ad < r["w"] / 2
        sc.img[mark] = _jitter(rng, [.88, .88, .86], 0.02)
    return roads


def _cars_on_roads(sc: _Scene, roads: list[dict], traffic: float) -> None:
    rng = sc.rng
    for r in roads:
        if r["path"]:
            continue
        n = rng.poisson(traffic * sc.size / 45)
        c, s = math.cos(r["ang"]), math.sin(r["ang"])
        for _ in range(n):
            t = rng.uniform(-0.75, 0.75) * sc.size
            side = rng.choice([-1.0, 1.0])
            lane = (r["w"] / 2 - 2.8) if rng.random() < 0.35 and r["w"] > 14 else r["w"] / 4
            o = r["off"] + side * lane
            cx, cy = t * c - o * s, t * s + o * c
            _car(sc, cx, cy, r["ang"] + (0 if side > 0 else math.pi) + rng.normal(0, 0.02))


def _car(sc: _Scene, cx: float, cy: float, ang: float) -> bool:
    """A small car seen from above: rounded body, dark windscreen and rear window, 1.5 m high."""
    rng = sc.rng
    length, width = rng.uniform(8.5, 11.5), rng.uniform(3.8, 4.7)
    win = sc.window(cx, cy, length / 2 + 1)
    if win is None:
        return False
    sl, x, y = win
    u, v = _rot(x, y, ang)
    cr = 1.3
    du = np.maximum(np.abs(u) - (length / 2 - cr), 0)
    dv = np.maximum(np.abs(v) - (width / 2 - cr), 0)
    body = du * du + dv * dv < cr * cr
    if (sc.label[sl][body] == CAR).any():
        return False
    colour = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 0.03)
    rgb = np.broadcast_to(colour, body.shape + (3,)).copy()
    inner = np.abs(v) < width / 2 - 0.7
    glass = inner & (((u > 0.12 * length) & (u < 0.32 * length)) | ((u < -0.3 * length) & (u > -0.42 * length)))
    rgb[glass] = (0.1, 0.11, 0.13)
    rgb *= (1 + 0.12 * np.clip(1 - np.abs(v) / (width / 2), 0, 1))[..., None]  # rounded roof highlight
    sc.paint(sl, body, rgb, CAR, 3.0)
    return True


# ------------------------------------------------------------------------------------------------ lots, plazas
def _plazas(sc: _Scene, kind: str, theta: float) -> None:
    """Paved squares (urban) and parking lots with painted stalls and parked cars."""
    rng = sc.rng
    n_plaza = rng.integers(0, 3) if kind == "urban" else 0
    pave = _jitter(rng, rng.choice([[.7, .66, .6], [.6, .6, .6], [.68, .6, .55]]), 0.03)
    for _ in range(n_plaza):
        cx, cy = sc.pos()
        a, b = rng.uniform(15, 50), rng.uniform(15, 40)
        win = sc.window(cx, cy, math.hypot(a, b))
        sl, x, y = win
        u, v = _rot(x, y, theta)
        m = (np.abs(u) < a) & (np.abs(v) < b)
        tiles = 1 + 0.04 * sc.fine[sl] + 0.03 * ((np.abs(u) % 6 < 0.6) | (np.abs(v) % 6 < 0.6))
        sc.paint(sl, m, pave * tiles[..., None], IMPERVIOUS)
    n_lots = {"parking": rng.integers(1, 3), "urban": int(rng.random() < 0.3)}.get(kind, 0)
    for _ in range(n_lots):
        cx, cy = sc.pos() if kind != "parking" else rng.uniform(-0.2, 0.2, 2) * sc.size
        a = rng.uniform(40, 110) if kind == "parking" else rng.uniform(25, 50)
        b = rng.uniform(30, 80) if kind == "parking" else rng.uniform(18, 35)
        win = sc.window(cx, cy, math.hypot(a, b))
        if win is None:
            continue
        sl, x, y = win
        u, v = _rot(x, y, theta)
        lot = (np.abs(u) < a) & (np.abs(v) < b)
        rgb = _jitter(rng, [.33, .33, .34], 0.03) * (1 + 0.04 * sc.fine[sl] + 0.05 * sc.mid[sl])[..., None]
        sc.paint(sl, lot, rgb, IMPERVIOUS)
        sc.occupied[sl] |= lot
        stall_w, stall_l, aisle = rng.uniform(5.5, 6.5), rng.uniform(11, 13), rng.uniform(14, 18)
        row_pitch = 2 * stall_l + aisle
        vv = (v + b) % row_pitch  # per row: stalls, stalls, aisle
        in_stall = (vv < 2 * stall_l) & lot & (np.abs(u) < a - 2)
        line = in_stall & ((u % stall_w) < 0.6)
        sc.img[sl][line] = (0.85, 0.85, 0.83)
        occupancy = rng.uniform(0.3, 0.95)
        c, s = math.cos(theta), math.sin(theta)
        for row in range(int(2 * b // row_pitch) + 1):
            for half in (0, 1):
                vc = -b + row * row_pitch + stall_l * (half + 0.5)
                if vc > b - stall_l / 2:
                    continue
                for k in range(int(2 * a // stall_w)):
                    uc = -a + 2 + (k + 0.5) * stall_w - ((-a + 2) % stall_w)
                    if abs(uc) > a - 4 or rng.random() > occupancy:
                        continue
                    px, py = cx + uc * c - vc * s, cy + uc * s + vc * c
                    _car(sc, px, py, theta + math.pi / 2 + (math.pi if rng.random() < 0.5 else 0)
                         + rng.normal(0, 0.03))


# ------------------------------------------------------------------------------------------------ buildings
_ROOFS = {  # material: (base rgb, pitched?)
    "red tile": ([.66, .3, .22], True), "brown tile": ([.46, .29, .22], True), "slate": ([.3, .31, .34], True),
    "concrete": ([.62, .61, .59], False), "bitumen": ([.22, .22, .23], False), "metal": ([.74, .77, .8], False),
    "gravel": ([.58, .55, .5], False),
}


def _buildings(sc: _Scene, kind: str, theta: float) -> None:
    rng = sc.rng
    attempts = {"urban": 70, "suburban": 40, "park": 3, "forest": 0, "field": 4, "parking": 6}[kind]
    big = kind in ("urban", "field", "parking")
    for _ in range(attempts):
        cx, cy = sc.pos(margin=10)
        if big:
            a, b = rng.uniform(10, 38), rng.uniform(8, 22)
        else:
            a, b = rng.uniform(7, 14), rng.uniform(5, 9)
        ang = theta + (math.pi / 2 if rng.random() < 0.5 else 0) + rng.normal(0, 0.05)
        shape = "L" if rng.random() < (0.35 if big else 0.15) else "rect"
        if big:
            mat = rng.choice(["concrete", "bitumen", "metal", "gravel", "red tile", "slate"],
                             p=[.3, .2, .15, .1, .15, .1])
        else:
            mat = rng.choice(["red tile", "brown tile", "slate", "concrete"], p=[.5, .2, .2, .1])
        _building(sc, cx, cy, ang, a, b, shape, mat, margin=rng.uniform(2, 8))


def _building(sc: _Scene, cx, cy, ang, a, b, shape, mat, margin) -> bool:
    """One roof: rectangle or L, flat (parapet, rooftop units) or pitched (gable/hip, sun-shaded facets)."""
    rng = sc.rng
    win = sc.window(cx, cy, math.hypot(a, b) + margin + 1)
    if win is None:
        return False
    sl, x, y = win
    u, v = _rot(x, y, ang)
    d = np.minimum(a - np.abs(u), b - np.abs(v))  # inner distance to the edge (negative outside)
    if shape == "L":
        b1, a2 = b * rng.uniform(0.35, 0.6), a * rng.uniform(0.25, 0.45)
        sgn = rng.choice([-1.0, 1.0])
        arm1 = np.minimum(a - np.abs(u), b1 - np.abs(v + sgn * (b - b1)))
        arm2 = np.minimum(a2 - np.abs(u - (a - a2)), b - np.abs(v))
        d = np.maximum(arm1, arm2)
    if (sc.occupied[sl] & (d > -margin)).any():
        return False
    foot = d > 0
    if not foot.any():
        return False
    base, pitched = _ROOFS[mat]
    base = _jitter(rng, base, 0.03)
    cos_el = math.cos(sc.sun_el)
    vx, vy = -math.sin(ang), math.cos(ang)  # v axis in the image
    ux, uy = math.cos(ang), math.sin(ang)
    h0 = rng.uniform(14, 40) if mat in ("concrete", "bitumen", "metal", "gravel") else rng.uniform(10, 18)
    tex = 1 + 0.04 * sc.fine[sl]
    if pitched and shape == "rect":
        pitch = rng.uniform(0.5, 0.9)
        hip = rng.random() < 0.4
        du, dv = a - np.abs(u), b - np.abs(v)
        along_u = (du < dv) if hip else np.zeros_like(foot)
        height = h0 + pitch * (np.minimum(du, dv) if hip else dv)
        facing = np.where(along_u, np.sign(u) * (ux * sc.sun[0] + uy * sc.sun[1]),
                          np.sign(v) * (vx * sc.sun[0] + vy * sc.sun[1]))
        shade = 1 + 0.32 * cos_el * facing
        rows = np.where(along_u, u, v)
        tex = tex + 0.07 * np.sin(rows * 2 * math.pi / 2.3) + 0.05 * sc.mid[sl]
        ridge = (np.abs(v) < 0.7) & (du > b) if hip else np.abs(v) < 0.7
        if hip:
            ridge |= np.abs(du - dv) < 0.6
        rgb = base * (tex * shade)[..., None]
        rgb[ridge & foot] *= 1.1
    else:
        height = np.full(foot.shape, h0, np.float32)
        if mat == "metal":
            tex = tex + 0.05 * ((u % 3.5) < 1.0)
        elif mat == "gravel":
            tex = tex + 0.07 * sc.fine[sl] + 0.04 * sc.clump[sl]
        else:
            tex = tex + 0.05 * sc.mid[sl] + 0.03 * sc.low2[sl]
        rgb = base * tex[..., None]
        rgb[(d < 1.6) & foot] *= 1.18 if mat != "metal" else 0.9  # parapet
        rgb[(d >= 1.6) & (d < 2.6)] *= 0.88
        for _ in range(rng.integers(0, 5)):  # rooftop units, skylights
            ku, kv = rng.uniform(-a + 4, a - 4), rng.uniform(-b + 4, b - 4)
            ka, kb = rng.uniform(1.5, 4), rng.uniform(1.5, 3.5)
            unit = (np.abs(u - ku) < ka) & (np.abs(v - kv) < kb) & (d > 2.6)
            rgb[unit] = _jitter(rng, [.8, .8, .8] if rng.random() < 0.7 else [.3, .35, .45], 0.05)
            height = np.where(unit, h0 + rng.uniform(2, 5), height)
    rgb[(d < 0.8) & foot] *= 0.75  # gutter / edge
    sc.paint(sl, foot, np.clip(rgb, 0, 1), BUILDING, height.astype(np.float32))
    sc.occupied[sl] |= foot
    return True


# ------------------------------------------------------------------------------------------------ trees, clutter
def _trees(sc: _Scene, kind: str, roads: list[dict]) -> None:
    rng = sc.rng
    n = {"urban": rng.integers(2, 16), "suburban": rng.integers(15, 45), "park": rng.integers(15, 45),
         "forest": rng.integers(70, 130), "field": rng.integers(0, 8), "parking": rng.integers(4, 16)}[kind]
    greens = np.array([[.17, .3, .12], [.22, .33, .13], [.13, .24, .12], [.28, .36, .16], [.2, .28, .17]])
    centres = []
    n_clusters = rng.integers(1, 5)
    cluster = [sc.pos() for _ in range(n_clusters)]
    for i in range(n):
        if rng.random() < 0.6:
            k = cluster[rng.integers(n_clusters)]
            centres.append((k[0] + rng.normal(0, 30), k[1] + rng.normal(0, 30)))
        else:
            centres.append(sc.pos(margin=8))
    for r in roads:  # rows of street trees
        if r["path"] or r["walk"] == 0 or rng.random() > (0.5 if kind in ("urban", "suburban") else 0.15):
            continue
        side = rng.choice([-1.0, 1.0])
        o = r["off"] + side * (r["w"] / 2 + r["walk"] + rng.uniform(2, 6))
        c, s = math.cos(r["ang"]), math.sin(r["ang"])
        step = rng.uniform(14, 22)
        for t in np.arange(-sc.size * 0.72, sc.size * 0.72, step) + rng.uniform(0, step):
            centres.append((t * c - o * s, t * s + o * c))
    big = kind == "forest"
    for cx, cy in centres:
        iy, ix = int(round(cy + sc.half)), int(round(cx + sc.half))
        if 0 <= iy < sc.size and 0 <= ix < sc.size and sc.asphalt[iy, ix]:
            continue
        radius = rng.uniform(7, 15) if big else rng.uniform(4.5, 12)
        rgb = _jitter(rng, greens[rng.integers(len(greens))], 0.025)
        _tree(sc, cx, cy, radius, rng.uniform(10, 28), rgb)


def _tree(sc: _Scene, cx, cy, radius, top, rgb) -> None:
    """A round crown: lumpy outline, dome height, sun-side lit, leafy texture."""
    win = sc.window(cx, cy, radius * 1.35 + 1)
    if win is None:
        return
    sl, x, y = win
    rr = radius * (1 + 0.14 * sc.mid[sl] + 0.07 * sc.clump[sl])
    q = (x * x + y * y) / (rr * rr)
    crown = q < 1
    z = np.sqrt(np.clip(1 - q, 0, 1))
    lam = (x * sc.sun[0] + y * sc.sun[1]) / rr * math.cos(sc.sun_el) + z * math.sin(sc.sun_el)
    shade = 0.55 + 0.55 * np.clip(lam, 0, 1)
    tex = 1 + 0.2 * sc.clump[sl] + 0.08 * sc.fine[sl]
    sc.paint(sl, crown, rgb * (shade * tex)[..., None], TREE, top * (0.6 + 0.4 * z))


def _clutter(sc: _Scene, kind: str) -> None:
    """Containers, piles and sheds of no class of their own (Potsdam's 'clutter/background')."""
    rng = sc.rng
    n = {"field": rng.integers(2, 14), "urban": rng.integers(0, 4), "parking": rng.integers(0, 3)}.get(kind, 0)
    for _ in range(n):
        cx, cy = sc.pos()
        if rng.random() < 0.6:  # container / box
            a, b, ang = rng.uniform(4, 8), rng.uniform(2, 3.5), rng.uniform(0, math.pi)
            win = sc.window(cx, cy, math.hypot(a, b))
            sl, x, y = win
            u, v = _rot(x, y, ang)
            m = (np.abs(u) < a) & (np.abs(v) < b)
            base = _jitter(rng, rng.choice([[.2, .35, .6], [.6, .25, .15], [.5, .3, .2], [.25, .45, .3],
                                            [.8, .7, .3]]), 0.05)
            rgb = base * (1 + 0.08 * np.sin(u * 2 * math.pi / 1.5))[..., None]
            sc.paint(sl, m, rgb, CLUTTER, rng.uniform(4, 7))
        else:  # pile of material
            r = rng.uniform(4, 10)
            win = sc.window(cx, cy, r * 1.4)
            sl, x, y = win
            q = (x * x + y * y) / (r * r * (1 + 0.3 * sc.mid[sl]) ** 2)
            m = q < 1
            base = _jitter(rng, rng.choice([[.5, .45, .38], [.35, .33, .32], [.65, .6, .5]]), 0.04)
            rgb = base * (1 + 0.12 * sc.fine[sl] + 0.1 * sc.clump[sl])[..., None]
            sc.paint(sl, m, rgb, CLUTTER, 3 * np.sqrt(np.clip(1 - q, 0, 1)) + 0.5)


# ------------------------------------------------------------------------------------------------ light
def _shadows(sc: _Scene) -> np.ndarray:
    """Cast shadows: a pixel is shaded if something higher blocks the ray towards the sun (height-map march)."""
    size, h = sc.size, sc.height
    shadow = np.zeros((size, size), bool)
    hmax = float(h.max())
    if hmax <= 0:
        return shadow.astype(np.float32)
    tan_el = math.tan(sc.sun_el)
    seen = set()
    for k in range(1, int(hmax / tan_el) + 2):
        dx, dy = int(round(k * sc.sun[0])), int(round(k * sc.sun[1]))
        if (dx, dy) in seen or (dx, dy) == (0, 0):
            continue
        seen.add((dx, dy))
        if abs(dx) >= size or abs(dy) >= size:
            break
        rise = math.hypot(dx, dy) * tan_el
        dst = (slice(max(0, -dy), size - max(0, dy)), slice(max(0, -dx), size - max(0, dx)))
        src = (slice(max(0, dy), size - max(0, -dy)), slice(max(0, dx), size - max(0, -dx)))
        shadow[dst] |= h[src] > h[dst] + rise
    return _box3(shadow.astype(np.float32))


def _finish(sc: _Scene) -> np.ndarray:
    """Shadows, scene-wide illumination and colour cast, optics blur and sensor noise; to uint8."""
    rng = sc.rng
    shade = _shadows(sc)[..., None]
    dark = np.array([0.38, 0.42, 0.52], np.float32) * rng.uniform(0.85, 1.2)  # shadows are bluish
    img = sc.img * (1 - shade * (1 - dark))
    img = img * rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.035, 3)).astype(np.float32)
    img = np.clip(img, 0, 1) ** rng.uniform(0.88, 1.12)
    haze = rng.uniform(0, 0.08)
    img = img * (1 - haze) + haze * np.array([0.7, 0.74, 0.8], np.float32)
    sharp = rng.uniform(0.2, 0.7)
    img = sharp * img + (1 - sharp) * _box3(img)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0.006, 0.018)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def generate_scene(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic aerial tile: (image uint8 (H, W, 3), label uint8 (H, W) in 0..5), deterministic in seed."""
    rng = np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    sc = _Scene(rng, size)
    kind = str(rng.choice(_KINDS, p=_KIND_P))
    theta = rng.uniform(0, math.pi)
    _ground(sc, kind)
    roads = _roads(sc, kind, theta)
    _plazas(sc, kind, theta)
    traffic = {"urban": 1.2, "suburban": 0.5, "parking": 0.8}.get(kind, 0.25)
    _cars_on_roads(sc, roads, traffic)
    _buildings(sc, kind, theta)
    _clutter(sc, kind)
    _trees(sc, kind, roads)
    return _finish(sc), sc.label
