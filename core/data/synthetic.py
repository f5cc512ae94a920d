"""Synthetic aerial-like scenes with per-pixel ISPRS Potsdam labels, and a cached dataset of them.

Why: the workbench must run end to end on a fresh laptop with no downloads. These scenes are cheap, deterministic
and look enough like a top-down orthophoto (roads with markings, roofs with cast shadows, trees, cars) that
contrastive pretraining and segmentation have real structure to learn. Scenes come in kinds (downtown, urban,
suburban, park, forest, field, parking) so tiles differ in their dominant class and same-class "false negatives"
are common, as in real imagery.

Rendering is vectorised numpy: every object is drawn in a small window from coordinate grids, a height map acts
as a z-buffer, and shadows are cast by marching the height map towards the sun. Shadows darken the image but
never change the label (the Potsdam convention). Sizes are in pixels at roughly 0.4 m per pixel.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import time
import warnings
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .paths import CachedTiles, DataError, data_root, publish_dir, temp_dir_for

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


# ------------------------------------------------------------------------------------------------ roads
def _roads(sc: _Scene, kind: str, theta: float) -> list[dict]:
    """A few straight roads on the scene's grid, some crossing; sidewalks, markings, zebra crossings."""
    rng = sc.rng
    n, n_paths = _count(rng, kind, "roads"), _count(rng, kind, "paths")
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
        roads.append(dict(ang=ang, off=off, w=width, walk=walk, ad=np.abs(d - off), d=d - off, along=along,
                          path=path))
    if not roads:
        return roads
    # Masks first (sidewalks under any asphalt, paths under roads), then one colouring pass per surface.
    walk = np.zeros_like(sc.asphalt)
    paths = np.zeros_like(sc.asphalt)
    curb = np.zeros_like(sc.asphalt)
    tracks = np.zeros(sc.asphalt.shape, np.float32)
    for r in roads:
        ad = r["ad"]
        if r["path"]:
            paths |= ad < r["w"] / 2
            continue
        walk |= ad < r["w"] / 2 + r["walk"]
        sc.asphalt |= ad < r["w"] / 2
        np.maximum(tracks, 1 - ((ad - r["w"] / 4) * (10 / r["w"])) ** 2, out=tracks)  # tyre tracks
        if r["walk"] > 0:
            curb |= np.abs(ad - r["w"] / 2 - 0.5) < 0.6
    asphalt = sc.asphalt
    paths &= ~walk
    walk &= ~asphalt
    curb &= walk
    tex = 1 + 0.05 * sc.fine + 0.04 * sc.mid
    walk_rgb = _rgb(rng, [[.62, .6, .56], [.66, .62, .56], [.55, .55, .55]][rng.integers(3)]).reshape(3, 1)
    path_rgb = _rgb(rng, [[.7, .66, .58], [.6, .57, .52]][rng.integers(2)]).reshape(3, 1)
    asphalt_rgb = (_rgb(rng, [.36, .36, .37], 0.04) * rng.uniform(0.8, 1.15)).reshape(3, 1)
    sc.img[:, walk] = walk_rgb * tex[walk]
    sc.img[:, paths] = path_rgb * tex[paths]
    sc.img[:, asphalt] = asphalt_rgb * (tex - 0.06 * tracks - 0.08 * (sc.low2 > 1.3))[asphalt]
    sc.img[:, curb] = sc.img[:, curb] * 0.6 + 0.35
    sc.label[walk | paths | asphalt] = IMPERVIOUS
    paint = _rgb(rng, [.88, .88, .86], 0.02).reshape(3, 1)
    for i, r in enumerate(roads):
        sc.occupied |= r["ad"] < r["w"] / 2 + r["walk"] + 1.5
        if r["path"] or r["w"] < 12:
            continue
        ad = r["ad"]
        period = rng.uniform(9, 14)
        dash = (r["along"] % period) < period * 0.5
        if r["w"] >= 20:
            mark = (ad < 0.55) | ((np.abs(ad - r["w"] / 4) < 0.5) & dash)
        else:
            mark = (ad < 0.55) & dash
        if rng.random() < 0.6:
            mark |= np.abs(ad - (r["w"] / 2 - 1.5)) < 0.5
        for j, o in enumerate(roads):
            if j == i or o["path"]:
                continue
            band = o["ad"] - (o["w"] / 2 + o["walk"])  # no markings across the crossing road
            mark &= band > 0
            if rng.random() < 0.5:  # zebra crossing just before the crossing road
                mark |= (band > 1.5) & (band < 6) & (ad < r["w"] / 2 - 1) & ((r["d"] % 2.6) < 1.3)
        mark &= ad < r["w"] / 2
        sc.img[:, mark] = paint
    return roads


def _cars_on_roads(sc: _Scene, roads: list[dict], traffic: float) -> None:
    """Cars in both lanes (right-hand traffic) and parked at the curb, aligned with the road."""
    rng = sc.rng
    for r in roads:
        if r["path"]:
            continue
        c, s = math.cos(r["ang"]), math.sin(r["ang"])
        for _ in range(rng.poisson(traffic * sc.size / 45)):
            t = rng.uniform(-0.75, 0.75) * sc.size
            side = 1.0 if rng.random() < 0.5 else -1.0
            lane = (r["w"] / 2 - 2.8) if rng.random() < 0.35 and r["w"] > 14 else r["w"] / 4
            o = r["off"] + side * lane
            _car(sc, t * c - o * s, t * s + o * c, r["ang"] + (0 if side > 0 else math.pi) + rng.normal(0, 0.02))


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
    colour = _rgb(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))])
    rgb = colour * (1 + 0.12 * np.clip(1 - np.abs(v) / (width / 2), 0, 1))  # rounded roof highlight
    inner = np.abs(v) < width / 2 - 0.7
    glass = inner & (((u > 0.12 * length) & (u < 0.32 * length)) | ((u < -0.3 * length) & (u > -0.42 * length)))
    rgb[:, glass] = np.array([[0.1], [0.11], [0.13]], np.float32)
    sc.paint(sl, body, rgb, CAR, 3.0)
    return True


# ------------------------------------------------------------------------------------------------ lots, plazas
def _plazas(sc: _Scene, kind: str, theta: float) -> None:
    """Paved squares and courtyards (urban) and parking lots with painted stalls and parked cars."""
    rng = sc.rng
    pave = _rgb(rng, [[.7, .66, .6], [.6, .6, .6], [.68, .6, .55]][rng.integers(3)])
    for _ in range(_count(rng, kind, "plazas")):
        cx, cy = sc.pos()
        a, b = rng.uniform(15, 55), rng.uniform(12, 40)
        sl, x, y = sc.window(cx, cy, math.hypot(a, b))
        u, v = _rot(x, y, theta)
        m = (np.abs(u) < a) & (np.abs(v) < b)
        joints = ((np.abs(u) % 6) < 0.6) | ((np.abs(v) % 6) < 0.6)
        sc.paint(sl, m, pave * (1 + 0.04 * sc.fine[sl] - 0.04 * joints), IMPERVIOUS)
    for _ in range(_count(rng, kind, "lots")):
        cx, cy = sc.pos() if kind != "parking" else tuple(rng.uniform(-0.2, 0.2, 2) * sc.size)
        a = rng.uniform(40, 110) if kind == "parking" else rng.uniform(25, 50)
        b = rng.uniform(30, 80) if kind == "parking" else rng.uniform(18, 35)
        sl, x, y = sc.window(cx, cy, math.hypot(a, b))
        u, v = _rot(x, y, theta)
        lot = (np.abs(u) < a) & (np.abs(v) < b)
        sc.paint(sl, lot, _rgb(rng, [.33, .33, .34]) * (1 + 0.04 * sc.fine[sl] + 0.05 * sc.mid[sl]), IMPERVIOUS)
        sc.occupied[sl] |= lot
        stall_w, stall_l, aisle = rng.uniform(5.5, 6.5), rng.uniform(11, 13), rng.uniform(14, 18)
        pitch = 2 * stall_l + aisle  # per row: stalls facing stalls, then an aisle
        in_stall = ((v + b) % pitch < 2 * stall_l) & lot & (np.abs(u) < a - 2)
        sc.img[:, sl[0], sl[1]][:, in_stall & ((u % stall_w) < 0.6)] = 0.85
        full = rng.uniform(0.3, 0.95)
        c, s = math.cos(theta), math.sin(theta)
        for row in range(int(2 * b // pitch) + 1):
            for half in (0.5, 1.5):
                vc = -b + row * pitch + stall_l * half
                if vc > b - stall_l / 2:
                    continue
                for k in range(int(2 * a // stall_w) + 1):
                    uc = (math.floor(-a / stall_w) + k + 0.5) * stall_w
                    if abs(uc) > a - 4 or rng.random() > full:
                        continue
                    flip = math.pi if rng.random() < 0.5 else 0.0
                    _car(sc, cx + uc * c - vc * s, cy + uc * s + vc * c, theta + math.pi / 2 + flip
                         + rng.normal(0, 0.03))


# ------------------------------------------------------------------------------------------------ buildings
_ROOFS = {  # material: (base rgb, pitched?)
    "red tile": ([.66, .3, .22], True), "brown tile": ([.46, .29, .22], True), "slate": ([.3, .31, .34], True),
    "concrete": ([.62, .61, .59], False), "bitumen": ([.22, .22, .23], False), "metal": ([.74, .77, .8], False),
    "gravel": ([.58, .55, .5], False),
}


def _buildings(sc: _Scene, kind: str, theta: float) -> None:
    """Blocks (urban, industrial) or houses (suburban) placed off roads, lots and each other.

    In town, big candidates come first and are cut back where they meet a road or a neighbour, so blocks fill up
    to the sidewalk and terraces share walls; detached houses are simply rejected when they do not fit.
    """
    rng = sc.rng
    attempts = _KINDS[kind]["tries"]
    big = kind in ("downtown", "urban", "field", "parking")
    clip = kind in ("downtown", "urban")
    for k in range(attempts):
        cx, cy = sc.pos(margin=10)
        if not sc.free(cx, cy):
            continue  # cheap early reject on a crowded tile
        if kind == "downtown":
            a, b = rng.uniform(20, 60), rng.uniform(14, 40)
        elif big:
            a, b = rng.uniform(10, 40), rng.uniform(8, 24)
        else:
            a, b = rng.uniform(7, 15), rng.uniform(5, 10)
        if clip:
            a, b = max(6.0, a * (1 - 0.6 * k / attempts)), max(5.0, b * (1 - 0.6 * k / attempts))
        ang = theta + (math.pi / 2 if rng.random() < 0.5 else 0) + rng.normal(0, 0.05)
        shape = "L" if rng.random() < (0.35 if big else 0.15) else "rect"
        if big:
            mat = rng.choice(["concrete", "bitumen", "metal", "gravel", "red tile", "slate"],
                             p=[.3, .2, .15, .1, .15, .1])
        else:
            mat = rng.choice(["red tile", "brown tile", "slate", "concrete"], p=[.5, .2, .2, .1])
        margin = rng.uniform(0, 3) if clip else rng.uniform(2, 7)
        _building(sc, cx, cy, ang, a, b, shape, str(mat), margin, clip)


def _building(sc: _Scene, cx, cy, ang, a, b, shape, mat, margin, clip=False) -> bool:
    """One roof: rectangle or L, flat (parapet, rooftop units) or pitched (gable/hip, sun-shaded facets)."""
    rng = sc.rng
    win = sc.window(cx, cy, math.hypot(a, b) + margin + 1)
    if win is None:
        return False
    sl, x, y = win
    u, v = _rot(x, y, ang)
    du, dv = a - np.abs(u), b - np.abs(v)
    d = np.minimum(du, dv)  # inner distance to the edge (negative outside)
    if shape == "L":
        b1, a2 = b * rng.uniform(0.35, 0.6), a * rng.uniform(0.25, 0.45)
        sgn = 1.0 if rng.random() < 0.5 else -1.0
        arm1 = np.minimum(du, b1 - np.abs(v + sgn * (b - b1)))
        arm2 = np.minimum(a2 - np.abs(u - (a - a2)), dv)
        d = np.maximum(arm1, arm2)
    if shape == "L" and _ROOFS[mat][1]:
        mat = "concrete" if rng.random() < 0.6 else "bitumen"  # pitched roofs here are plain rectangles
    base, pitched = _ROOFS[mat]
    foot = d > 0
    blocked = sc.occupied[sl]
    if clip:  # cut back where it meets a road or a neighbour; keep it if most of it is left
        full = np.count_nonzero(foot)
        foot &= ~blocked
        kept = np.count_nonzero(foot)
        if kept < 0.45 * full or (kept < full and pitched):
            return False
    elif (blocked & (d > -margin)).any():
        return False
    if not foot.any():
        return False
    f = np.pad(foot, 1, mode="edge")
    edge = foot & ~(f[:-2, 1:-1] & f[2:, 1:-1] & f[1:-1, :-2] & f[1:-1, 2:])
    base = _rgb(rng, base)
    tex = 1 + 0.04 * sc.fine[sl]
    if pitched and shape == "rect":
        h0, pitch, hip = rng.uniform(10, 18), rng.uniform(0.5, 0.9), rng.random() < 0.4
        along_u = du < dv if hip else np.zeros_like(foot)
        height = h0 + pitch * (d if hip else dv)
        sun_u = math.cos(ang) * sc.sun[0] + math.sin(ang) * sc.sun[1]
        sun_v = math.cos(ang) * sc.sun[1] - math.sin(ang) * sc.sun[0]
        facing = np.where(along_u, np.sign(u) * sun_u, np.sign(v) * sun_v)  # facet normal . sun
        rows = np.where(along_u, u, v)  # tile rows run parallel to the eaves
        tex = (tex + 0.07 * np.sin(rows * (2 * math.pi / 2.3)) + 0.05 * sc.mid[sl])
        tex *= 1 + 0.32 * math.cos(sc.sun_el) * facing
        ridge = np.abs(v) < 0.7
        if hip:
            ridge = (ridge & (du > b)) | (np.abs(du - dv) < 0.6)
        tex[ridge] *= 1.1
    else:
        h0 = rng.uniform(14, 40)
        height = np.full(foot.shape, h0, np.float32)
        if mat == "metal":
            tex = tex + 0.05 * ((u % 3.5) < 1.0)
        elif mat == "gravel":
            tex = tex + 0.07 * sc.fine[sl] + 0.04 * sc.clump[sl]
        else:
            tex = tex + 0.05 * sc.mid[sl] + 0.03 * sc.low2[sl]
        tex[d < 1.6] *= 1.18 if mat != "metal" else 0.9  # parapet
        tex[(d >= 1.6) & (d < 2.6)] *= 0.88
    tex[edge] *= 0.75  # gutter / outline
    rgb = base * tex
    if not pitched or shape != "rect":
        for _ in range(rng.integers(0, 5)):  # rooftop units, skylights
            ku, kv = rng.uniform(-1, 1) * max(a - 4, 0), rng.uniform(-1, 1) * max(b - 4, 0)
            unit = (np.abs(u - ku) < rng.uniform(1.5, 4)) & (np.abs(v - kv) < rng.uniform(1.5, 3.5)) & (d > 2.6)
            rgb[:, unit] = _rgb(rng, [.8, .8, .8] if rng.random() < 0.7 else [.3, .35, .45], 0.05).reshape(3, 1)
            height = np.where(unit, h0 + rng.uniform(2, 5), height)
    sc.paint(sl, foot, np.clip(rgb, 0, 1), BUILDING, height.astype(np.float32))
    sc.occupied[sl] |= (d > -margin) if not clip else foot | ((d > -margin) & (d <= 0))
    return True


# ------------------------------------------------------------------------------------------------ trees, clutter
_GREENS = ([.17, .3, .12], [.22, .33, .13], [.13, .24, .12], [.28, .36, .16], [.2, .28, .17])


def _trees(sc: _Scene, kind: str, roads: list[dict]) -> None:
    """Clustered trees, scattered trees and rows of street trees along sidewalks."""
    rng = sc.rng
    n = _count(rng, kind, "trees")
    clusters = [sc.pos() for _ in range(rng.integers(1, 5))]
    centres = []
    for _ in range(n):
        if rng.random() < (0.15 if kind == "forest" else 0.6):
            kx, ky = clusters[rng.integers(len(clusters))]
            centres.append((kx + rng.normal(0, 30), ky + rng.normal(0, 30)))
        else:
            centres.append(sc.pos(margin=8))
    for r in roads:
        street = 0.5 if kind in ("urban", "suburban", "downtown") else 0.15
        if r["path"] or r["walk"] == 0 or rng.random() > street:
            continue
        o = r["off"] + (1 if rng.random() < 0.5 else -1) * (r["w"] / 2 + r["walk"] + rng.uniform(2, 6))
        c, s = math.cos(r["ang"]), math.sin(r["ang"])
        step = rng.uniform(14, 22)
        for t in np.arange(-sc.size * 0.72, sc.size * 0.72, step) + rng.uniform(0, step):
            centres.append((t * c - o * s, t * s + o * c))
    for cx, cy in centres:
        iy, ix = int(round(cy + sc.half)), int(round(cx + sc.half))
        if 0 <= iy < sc.size and 0 <= ix < sc.size and sc.asphalt[iy, ix]:
            continue
        radius = rng.uniform(7, 15) if kind == "forest" else rng.uniform(4.5, 12)
        _tree(sc, cx, cy, radius, rng.uniform(10, 28), _rgb(rng, _GREENS[rng.integers(len(_GREENS))], 0.025))


def _tree(sc: _Scene, cx, cy, radius, top, rgb) -> None:
    """A round crown: lumpy outline, dome height, lit on the sun side, leafy texture."""
    win = sc.window(cx, cy, radius * 1.35 + 1)
    if win is None:
        return
    sl, x, y = win
    rr = radius * (1 + 0.14 * sc.mid[sl] + 0.07 * sc.clump[sl])
    q = (x * x + y * y) / (rr * rr)
    z = np.sqrt(np.clip(1 - q, 0, 1))
    lam = (x * sc.sun[0] + y * sc.sun[1]) / rr * math.cos(sc.sun_el) + z * math.sin(sc.sun_el)
    shade = (0.55 + 0.55 * np.clip(lam, 0, 1)) * (1 + 0.2 * sc.clump[sl] + 0.08 * sc.fine[sl])
    sc.paint(sl, q < 1, rgb * shade, TREE, top * (0.6 + 0.4 * z))


def _clutter(sc: _Scene, kind: str) -> None:
    """Containers and material piles: Potsdam's 'clutter/background' class."""
    rng = sc.rng
    for _ in range(_count(rng, kind, "clutter")):
        cx, cy = sc.pos()
        if rng.random() < 0.6:  # container
            a, b, ang = rng.uniform(4, 8), rng.uniform(2, 3.5), rng.uniform(0, math.pi)
            sl, x, y = sc.window(cx, cy, math.hypot(a, b))
            u, v = _rot(x, y, ang)
            base = _rgb(rng, [[.2, .35, .6], [.6, .25, .15], [.5, .3, .2], [.25, .45, .3], [.8, .7, .3]]
                        [rng.integers(5)], 0.05)
            rgb = base * (1 + 0.08 * np.sin(u * (2 * math.pi / 1.5)))
            sc.paint(sl, (np.abs(u) < a) & (np.abs(v) < b), rgb, CLUTTER, rng.uniform(4, 7))
        else:  # pile of earth, gravel or rubble
            r = rng.uniform(4, 10)
            sl, x, y = sc.window(cx, cy, r * 1.4)
            q = (x * x + y * y) / (r * r * (1 + 0.3 * sc.mid[sl]) ** 2)
            base = _rgb(rng, [[.5, .45, .38], [.35, .33, .32], [.65, .6, .5]][rng.integers(3)], 0.04)
            rgb = base * (1 + 0.12 * sc.fine[sl] + 0.1 * sc.clump[sl])
            sc.paint(sl, q < 1, rgb, CLUTTER, 3 * np.sqrt(np.clip(1 - q, 0, 1)) + 0.5)


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


def generate_scene(seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic aerial tile: (image uint8 (H, W, 3), label uint8 (H, W) in 0..5), deterministic in seed."""
    rng = np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    sc = _Scene(rng, size)
    kinds = list(_KINDS)
    kind = kinds[rng.choice(len(kinds), p=[_KINDS[k]["p"] for k in kinds])]
    theta = rng.uniform(0, math.pi)
    _ground(sc, kind)
    roads = _roads(sc, kind, theta)
    _plazas(sc, kind, theta)
    _cars_on_roads(sc, roads, _KINDS[kind]["traffic"])
    _buildings(sc, kind, theta)
    _clutter(sc, kind)
    _trees(sc, kind, roads)
    return _finish(sc), sc.label


# ------------------------------------------------------------------------------------------------ the dataset
def tile_seed(seed: int, index: int) -> int:
    """The scene seed of tile ``index`` of a dataset with ``seed``: a hash, so datasets do not overlap."""
    digest = hashlib.blake2b(f"synthetic:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _render_chunk(job: tuple[int, int, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """Worker: tiles [start, stop) of a dataset (top-level so a process pool can pickle it)."""
    seed, start, stop, size = job
    pairs = [generate_scene(tile_seed(seed, i), size) for i in range(start, stop)]
    return start, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SyntheticAerial(CachedTiles):
    """Synthetic aerial tiles with ISPRS Potsdam labels, generated once and cached as memory-mapped arrays.

    On disk, ``<root>/synthetic/n{num_tiles}_s{tile_size}_seed{seed}/`` holds ``images.npy`` (N, H, W, 3) uint8,
    ``labels.npy`` (N, H, W) uint8 (class indices into :data:`CLASSES`) and ``meta.json``. The folder appears
    atomically; concurrent constructions generate in private temp folders and the first to finish wins.

    Items are ``dict(image=uint8 (3, H, W), mask=int64 (H, W), index=int)``; the trainer uses
    :meth:`get_images` for whole batches.
    """

    has_labels = True
    classes = CLASSES

    def __init__(self, root: str | Path | None = None, num_tiles: int = 2000, tile_size: int = 256, seed: int = 0,
                 progress: bool = True):
        if num_tiles < 1 or tile_size < 8:
            raise DataError(f"synthetic data: need num_tiles >= 1 and tile_size >= 8, got {num_tiles}, {tile_size}")
        self.num_tiles, self.seed, self.progress = int(num_tiles), int(seed), progress
        base = Path(root) if root is not None else data_root()
        self.cache_dir = base / "synthetic" / f"n{num_tiles}_s{tile_size}_seed{seed}"
        if not self._cache_ok():
            self._discard_stale()
            if not self._cache_ok():
                self._generate(int(tile_size))
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())

    # -------------------------------------------------------------- cache
    def _cache_ok(self) -> bool:
        try:
            meta = json.loads((self.cache_dir / "meta.json").read_text())
            ok = meta.get("generator_version") == GENERATOR_VERSION and self.images.shape[0] == self.num_tiles
            return ok and self.labels.shape[0] == self.num_tiles
        except (OSError, ValueError):
            return False
        finally:
            self.__dict__.pop("_arrays", None)

    def _discard_stale(self) -> None:
        """Move an outdated or broken cache folder aside (one rename) and delete it."""
        if self.cache_dir.exists() and not self._cache_ok():  # not just published by another process
            stale = self.cache_dir.with_name(f".{self.cache_dir.name}.stale-{os.getpid()}-{time.time_ns()}")
            try:
                os.replace(self.cache_dir, stale)
            except OSError:
                return  # someone else moved it
            shutil.rmtree(stale, ignore_errors=True)

    def _generate(self, size: int) -> None:
        n, t0 = self.num_tiles, time.time()
        tmp = temp_dir_for(self.cache_dir)
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, size, size, 3))
            labels = np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.uint8, (n, size, size))
            chunk = 16
            jobs = [(self.seed, s, min(n, s + chunk), size) for s in range(0, n, chunk)]
            done: set[int] = set()

            def store(start: int, imgs: np.ndarray, labs: np.ndarray) -> None:
                images[start:start + len(imgs)], labels[start:start + len(imgs)] = imgs, labs
                done.add(start)
                bar.update(len(imgs))

            workers = min(_workers(), 8, len(jobs)) if n >= 400 else 1
            with tqdm(total=n, desc=f"generating {n} synthetic tiles", unit="tile",
                      disable=not self.progress) as bar:
                if workers > 1:
                    try:  # spawn: safe in threaded parents (Streamlit) and the same on every OS
                        with mp.get_context("spawn").Pool(workers) as pool:
                            for result in pool.imap_unordered(_render_chunk, jobs):
                                store(*result)
                    except (OSError, RuntimeError, EOFError) as err:  # no subprocesses here: go on serially
                        warnings.warn(f"synthetic data: parallel generation failed ({err}); continuing in "
                                      "one process", stacklevel=3)
                for job in jobs:
                    if job[1] not in done:
                        store(*_render_chunk(job))
            images.flush()
            labels.flush()
            del images, labels
            meta = dict(generator_version=GENERATOR_VERSION, num_tiles=n, tile_size=size, seed=self.seed,
                        classes=[{"name": c, "color": list(rgb)} for c, rgb in CLASSES],
                        seconds=round(time.time() - t0, 2), created=time.time())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -------------------------------------------------------------- access
    @property
    def labels(self) -> np.ndarray:
        """All label maps, (N, H, W) uint8, memory-mapped (read-only)."""
        return self._array("labels.npy")

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        mask = torch.from_numpy(np.asarray(self.labels[i], dtype=np.int64))
        return dict(image=self.image(i), mask=mask, index=i)

    def class_histogram(self, i: int) -> np.ndarray:
        """Fraction of tile i's pixels in each class, shape (6,), summing to 1."""
        counts = np.bincount(np.asarray(self.labels[int(i)]).ravel(), minlength=len(CLASSES))
        return counts / counts.sum()

    def dominant_class(self, i: int) -> int:
        """The class covering most of tile i (ties: the lower index)."""
        return int(np.argmax(self.class_histogram(i)))
