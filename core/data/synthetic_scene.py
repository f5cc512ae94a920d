"""Synthetic aerial-like scenes with per-pixel ISPRS Potsdam labels (``generate_scene``).

Why: the workbench must run end to end on a fresh laptop with no downloads. These scenes are cheap, deterministic
and look enough like a top-down orthophoto (roads with markings, roofs with cast shadows, trees, cars) that
contrastive pretraining and segmentation have real structure to learn. Scenes come in kinds (downtown, urban,
suburban, park, forest, field, parking) so tiles differ in their dominant class and same-class "false negatives"
are common, as in real imagery.

Every object is drawn in a small window from coordinate grids (the canvas and the light: ``synthetic_canvas``).
Sizes are in pixels at roughly 0.4 m per pixel. The cached data set of such tiles is ``core.data.synthetic``.
"""
from __future__ import annotations

import math

import numpy as np

from .synthetic_canvas import (BUILDING, CAR, CLUTTER, IMPERVIOUS, TREE, _CAR_COLOURS, _KINDS, _Scene, _count,
                               _finish, _ground, _rgb, _rot)


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
