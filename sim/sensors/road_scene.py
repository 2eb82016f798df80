"""The static 3D scene of a road network, built once per scenario.

`build_static_scene(road, rng, style)` lays out, in order: the terrain, lane
surfaces and junction fills, painted lane lines (solid, dashed, double; a few
millimetres above the asphalt), stop lines and zebra crosswalks, curbs and
sidewalks (urban style) or shoulders and guard rails (highway style) along the
outer edges of the paved area, traffic-light poles with their heads, and the
buildings and trees beside the road. All random choices come from `rng`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull

from sim.road import RoadNetwork
from sim.sensors import materials as mt
from sim.sensors.meshes import Mesh, MeshBuilder, blob, box, cylinder, fan, ribbon, transform, wall
from sim.types import frozen_array

PAINT_Z = 0.005  # [m] lane lines above the asphalt
MARK_Z = 0.007  # [m] stop lines and crosswalks, above the lane lines they cross
TERRAIN_Z = -0.03  # [m]
CURB_HEIGHT = 0.15  # [m]
HEAD_SIZE = (0.36, 0.30, 1.0)  # [m] traffic-light housing width, depth, height
HEAD_Z = 5.4  # [m] housing centre above the road
URBAN_SPEED = 20.0  # [m/s] roads with every speed limit below this get the urban style


@dataclass(frozen=True)
class SceneStyle:
    """The randomised look of one scenario's road."""

    dash_length: float = 3.0  # [m]
    dash_gap: float = 9.0  # [m]
    line_width: float = 0.15  # [m]
    paint: float = 1.0  # paint brightness (worn paint < 1)
    asphalt: float = 1.0  # asphalt brightness
    sidewalk_width: float = 3.0  # [m]
    shoulder_width: float = 2.5  # [m]
    tree_spacing: float = 14.0  # [m] mean gap between trees along an edge
    building_chance: float = 0.8  # probability that a frontage slot gets a building (urban style)
    urban: bool | None = None  # None: urban when every lane's speed limit is below URBAN_SPEED

    @classmethod
    def random(cls, rng: np.random.Generator) -> SceneStyle:
        dash = float(rng.choice([3.0, 3.0, 4.0, 6.0]))
        return cls(dash_length=dash, dash_gap=float(dash * rng.choice([2.0, 3.0])),
                   line_width=float(rng.uniform(0.12, 0.2)), paint=float(rng.uniform(0.7, 1.0)),
                   asphalt=float(rng.uniform(0.75, 1.25)), sidewalk_width=float(rng.uniform(2.0, 4.0)),
                   shoulder_width=float(rng.uniform(1.0, 3.0)), tree_spacing=float(rng.uniform(8.0, 25.0)),
                   building_chance=float(rng.uniform(0.5, 0.95)))


@dataclass(frozen=True, eq=False)
class LaneMarking:
    xy: np.ndarray  # (N, 2) [m] centre of the painted line, world frame
    marking: str  # sim.road.MARKINGS

    def __post_init__(self):
        object.__setattr__(self, "xy", frozen_array(self.xy))


@dataclass(frozen=True, eq=False)
class LightHead:
    light: int  # index into road.lights
    name: str
    centre: np.ndarray  # (3,) [m] housing centre, world frame
    facing: float  # [rad] yaw of the direction the lamps shine

    def __post_init__(self):
        object.__setattr__(self, "centre", frozen_array(self.centre))


@dataclass(frozen=True, eq=False)
class StaticScene:
    mesh: Mesh
    markings: tuple[LaneMarking, ...]
    heads: tuple[LightHead, ...]
    style: SceneStyle
    marking_xy: np.ndarray = field(init=False, repr=False)  # (P, 2) [m] every marking's points, concatenated
    marking_line: np.ndarray = field(init=False, repr=False)  # (P,) int, which marking each point belongs to

    def __post_init__(self):
        xy = np.concatenate([m.xy for m in self.markings]) if self.markings else np.zeros((0, 2))
        line = np.repeat(np.arange(len(self.markings)), [len(m.xy) for m in self.markings])
        object.__setattr__(self, "marking_xy", frozen_array(xy))
        object.__setattr__(self, "marking_line", frozen_array(line, np.int64))


# ----------------------------------------------------------------------------- helpers


def _normals(heading: np.ndarray) -> np.ndarray:
    return np.column_stack([-np.sin(heading), np.cos(heading)])


def _keep(xy: np.ndarray, heading: np.ndarray, max_step: float = 10.0, max_turn: float = 0.03) -> np.ndarray:
    """Indices of polyline samples to keep: the ends, and wherever the heading turned
    more than max_turn [rad] or max_step [m] passed since the last kept sample."""
    keep = [0]
    d = _arc(xy)
    for i in range(1, len(xy) - 1):
        j = keep[-1]
        if abs(heading[i + 1] - heading[j]) > max_turn or d[i + 1] - d[j] > max_step:
            keep.append(i)
    keep.append(len(xy) - 1)
    return np.array(keep)


def _arc(xy: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])


def _resample(xy: np.ndarray, heading: np.ndarray, s: np.ndarray, at: np.ndarray):
    """Points and headings of a polyline at arc lengths `at` (linear)."""
    x = np.interp(at, s, xy[:, 0])
    y = np.interp(at, s, xy[:, 1])
    h = np.arctan2(np.interp(at, s, np.sin(heading)), np.interp(at, s, np.cos(heading)))
    return np.column_stack([x, y]), h


def _strip(xy, heading, d0: float, d1: float, z: float = 0.0, keep: np.ndarray | None = None):
    """The band between lateral offsets d0 < d1 (positive left) of a polyline, at height z."""
    idx = _keep(xy, heading) if keep is None else keep
    n = _normals(heading[idx])
    return ribbon(xy[idx] + d1 * n, xy[idx] + d0 * n, z)


class _Paved:
    """Is a point on the road surface: inside a lane or inside a junction fill."""

    def __init__(self, road: RoadNetwork, hulls: list[np.ndarray]):
        self.road = road
        self.hulls = hulls

    def __call__(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        out = self.road.drivable(xy, margin=margin)
        for hull in self.hulls:
            inside = np.ones(len(xy), dtype=bool)
            for a, b in zip(hull, np.roll(hull, -1, axis=0)):
                edge = b - a
                cross = edge[0] * (xy[:, 1] - a[1]) - edge[1] * (xy[:, 0] - a[0])
                length = math.hypot(*edge)
                inside &= cross >= -margin * length
            out |= inside
        return out


# ----------------------------------------------------------------------------- road surface


def _junction_hulls(road: RoadNetwork) -> list[np.ndarray]:
    """Convex hulls (K, 2) counter-clockwise of groups of connector lanes that share endpoints."""
    conns = [ln for ln in road.lanes if ln.kind == "connector"]
    if not conns:
        return []
    group = list(range(len(conns)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    ends = np.array([[ln.xy[0], ln.xy[-1]] for ln in conns])  # (C, 2, 2)
    for i in range(len(conns)):
        for j in range(i + 1, len(conns)):
            d = np.linalg.norm(ends[i][:, None, :] - ends[j][None, :, :], axis=-1)
            if d.min() < 1.0:
                group[root(i)] = root(j)
    hulls = []
    for g in sorted({root(i) for i in range(len(conns))}):
        pts = np.concatenate([np.concatenate(road.boundaries(conns[i].id)) for i in range(len(conns)) if root(i) == g])
        hull = ConvexHull(pts)
        hulls.append(pts[hull.vertices])
    return hulls


def _surfaces(road: RoadNetwork, hulls, mb: MeshBuilder, style: SceneStyle) -> None:
    asphalt = mt.ASPHALT_MAT.tinted(np.array(mt.ASPHALT_MAT.albedo) * style.asphalt)
    for ln in road.lanes:
        mb.add(_strip(ln.xy, ln.heading, -0.5 * ln.width, 0.5 * ln.width), asphalt)
    for hull in hulls:
        mb.add(fan(hull, 0.0), asphalt)
    pts = np.concatenate([ln.xy for ln in road.lanes])
    lo, hi = pts.min(axis=0) - 400.0, pts.max(axis=0) + 400.0
    mb.add(fan([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]], TERRAIN_Z), mt.GRASS_MAT)


# ----------------------------------------------------------------------------- paint


def marking_lines(road: RoadNetwork) -> list[LaneMarking]:
    """Each painted lane boundary once: every lane's right edge, and its left edge
    unless a same-direction neighbour paints it or the opposite lane with the
    smaller id does."""
    out = []
    for ln in road.lanes:
        left, right = road.boundaries(ln.id)
        if ln.right_marking != "none":
            out.append(LaneMarking(right, ln.right_marking))
        if ln.left_marking == "none" or ln.left >= 0:
            continue
        if ln.left_opposite >= 0 and ln.left_opposite < ln.id:
            continue
        out.append(LaneMarking(left, ln.left_marking))
    return out


def _line_heading(xy: np.ndarray) -> np.ndarray:
    d = np.diff(xy, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    return np.unwrap(np.concatenate([h, h[-1:]]))


def _paint_line(line: LaneMarking, style: SceneStyle, rng: np.random.Generator, mb: MeshBuilder) -> None:
    base = mt.YELLOW_PAINT if "yellow" in line.marking else mt.WHITE_PAINT
    paint = base.tinted(np.array(base.albedo) * style.paint)
    xy = line.xy
    h = _line_heading(xy)
    half = 0.5 * style.line_width
    offsets = [(-half, half)]
    if line.marking == "double_yellow":
        offsets = [(0.06, 0.06 + style.line_width), (-0.06 - style.line_width, -0.06)]
    if not line.marking.startswith("dashed"):
        for d0, d1 in offsets:
            mb.add(_strip(xy, h, d0, d1, PAINT_Z), paint)
        return
    s = _arc(xy)
    period = style.dash_length + style.dash_gap
    for s0 in np.arange(-float(rng.uniform(0.0, period)), s[-1], period):
        a, b = max(s0, 0.0), min(s0 + style.dash_length, s[-1])
        if b - a < 0.3:
            continue
        pts, hh = _resample(xy, h, s, np.linspace(a, b, max(2, int(math.ceil((b - a) / 2.0)) + 1)))
        for d0, d1 in offsets:
            mb.add(_strip(pts, hh, d0, d1, PAINT_Z, keep=np.arange(len(pts))), paint)


def _paint(road: RoadNetwork, lines: list[LaneMarking], style: SceneStyle, rng, mb: MeshBuilder) -> None:
    for line in lines:
        _paint_line(line, style, rng, mb)
    for sl in road.stop_lines:
        ln = road.lane(sl.lane)
        xy, _ = road.to_cartesian(ln.id, np.array([sl.s - 0.45, sl.s, sl.s, sl.s - 0.45]),
                                  0.5 * ln.width * np.array([-1.0, -1.0, 1.0, 1.0]))
        mb.add(fan(xy, MARK_Z), mt.STOP_PAINT)
    for cw in road.crosswalks:
        _zebra(cw.polygon, rng, mb)


def _zebra(polygon: np.ndarray, rng, mb: MeshBuilder) -> None:
    """Bars parallel to the traffic, spread across the road along the polygon's long side."""
    p = np.asarray(polygon, dtype=float)
    e0, e1 = p[1] - p[0], p[2] - p[1]
    if np.linalg.norm(e0) >= np.linalg.norm(e1):
        origin, along, across = p[0], e0, e1
    else:
        origin, along, across = p[1], e1, p[0] - p[1]
    length = float(np.linalg.norm(along))
    u = along / length
    bar, gap = float(rng.uniform(0.45, 0.6)), float(rng.uniform(0.45, 0.7))
    inset = 0.15 * across
    for a in np.arange(0.25, length - bar, bar + gap):
        q0 = origin + a * u
        q1 = q0 + bar * u
        quad = [q0 + inset, q1 + inset, q1 + across - inset, q0 + across - inset]
        mb.add(fan(quad, MARK_Z), mt.CROSSWALK_PAINT)


# ----------------------------------------------------------------------------- edges, props


@dataclass
class _Edge:
    xy: np.ndarray  # (N, 2) points on the paved edge
    heading: np.ndarray  # (N,)
    out: np.ndarray  # (N, 2) unit vectors pointing away from the road


def _hull_outline(hull: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A closed counter-clockwise polygon sampled about every metre, with its headings."""
    closed = np.concatenate([hull, hull[:1]])
    pts, heads = [], []
    for a, b in zip(closed[:-1], closed[1:]):
        n = max(1, int(math.ceil(np.linalg.norm(b - a))))
        pts.append(a + (b - a) * np.linspace(0.0, 1.0, n, endpoint=False)[:, None])
        heads.append(np.full(n, math.atan2(b[1] - a[1], b[0] - a[0])))
    return np.concatenate(pts + [closed[-1:]]), np.unwrap(np.concatenate(heads + [heads[0][:1]]))


def _outer_edges(road: RoadNetwork, paved: _Paved) -> list[_Edge]:
    """Runs of lane edges and junction outlines with no pavement beyond them."""
    edges = []
    candidates = []
    for ln in road.lanes:
        left, right = road.boundaries(ln.id)
        n = _normals(ln.heading)
        ends = ln.kind != "connector"  # lane ends abut other pavement or nothing: no curb across them
        candidates += [(left, ln.heading, n, ends), (right, ln.heading, -n, ends)]
    for hull in paved.hulls:
        xy, heading = _hull_outline(hull)
        candidates.append((xy, heading, -_normals(heading), False))
    for xy, heading, out, ends in candidates:
        outer = ~paved(xy + 0.6 * out)
        if ends:
            outer[[0, -1]] = False
        idx = np.flatnonzero(outer)
        if len(idx) < 3:
            continue
        breaks = np.flatnonzero(np.diff(idx) > 1)
        for run in np.split(idx, breaks + 1):
            if len(run) >= 3:
                edges.append(_Edge(xy[run], heading[run], out[run]))
    return edges


def _edge_structures(edges: list[_Edge], urban: bool, style: SceneStyle, mb: MeshBuilder) -> None:
    for e in edges:
        keep = _keep(e.xy, e.heading, max_step=8.0)
        xy, out = e.xy[keep], e.out[keep]
        if urban:
            top = CURB_HEIGHT
            mb.add(wall(xy, 0.0, top), mt.CURB_MAT)
            mb.add(ribbon(xy, xy + 0.2 * out, top), mt.CURB_MAT)
            far = xy + (0.2 + style.sidewalk_width) * out
            mb.add(ribbon(xy + 0.2 * out, far, top), mt.SIDEWALK_MAT)
            mb.add(wall(far, TERRAIN_Z, top), mt.SIDEWALK_MAT)
        else:
            far = xy + style.shoulder_width * out
            mb.add(ribbon(xy, far, 0.0), mt.SHOULDER_MAT)
            rail = far + 0.4 * out
            mb.add(wall(rail, 0.45, 0.8), mt.BARRIER_MAT)
            s = _arc(rail)
            for at in np.arange(1.0, s[-1], 4.0):
                px, py = np.interp(at, s, rail[:, 0]), np.interp(at, s, rail[:, 1])
                mb.add(box(px - 0.06, px + 0.06, py - 0.06, py + 0.06, 0.0, 0.7), mt.POLE_MAT)


def _tree(mb: MeshBuilder, x: float, y: float, rng: np.random.Generator, small: bool = False) -> float:
    """A tree at (x, y) (a small street tree or a larger one); returns its crown radius."""
    height = float(rng.uniform(4.0, 6.5)) if small else float(rng.uniform(5.0, 10.0))
    r = float(rng.uniform(0.25, 0.33) if small else rng.uniform(0.3, 0.42)) * height
    trunk_top = height - 1.6 * r
    mb.add(cylinder(x, y, 0.08 + 0.02 * height, TERRAIN_Z, trunk_top + 0.3 * r, sides=5), mt.TRUNK_MAT)
    tint = np.array([rng.uniform(0.8, 1.2), 1.0, rng.uniform(0.7, 1.1)])
    green = np.array(mt.FOLIAGE_MAT.albedo) * rng.uniform(0.6, 1.3) * tint
    mb.add(blob((x, y, trunk_top + r), (r, r, 1.1 * r), rng, jitter=0.15), mt.FOLIAGE_MAT.tinted(green))
    return r


def _building(mb: MeshBuilder, centre, yaw: float, width: float, depth: float, height: float, rng) -> None:
    colour = mt.FACADE_COLOURS[int(rng.integers(len(mt.FACADE_COLOURS)))] * rng.uniform(0.85, 1.15)
    body = transform(box(-0.5 * depth, 0.5 * depth, -0.5 * width, 0.5 * width, TERRAIN_Z, height), yaw,
                     (centre[0], centre[1], 0.0))
    v, t = body
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    roof = np.abs(n[:, 2]) > 0.5 * np.linalg.norm(n, axis=1)
    mb.add((v, t[~roof]), mt.BUILDING_MAT.tinted(colour))
    mb.add((v, t[roof]), mt.ROOF_MAT)


def _props(edges: list[_Edge], paved: _Paved, urban: bool, style: SceneStyle, rng, mb: MeshBuilder) -> None:
    """Trees and buildings beside the outer edges, away from any pavement."""
    taken: list[tuple[float, float, float]] = []  # x, y, radius

    def free(x: float, y: float, r: float) -> bool:
        return all((x - a) ** 2 + (y - b) ** 2 > (r + c) ** 2 for a, b, c in taken)

    side = style.sidewalk_width + 0.2 if urban else style.shoulder_width + 0.4
    for e in edges:
        s = _arc(e.xy)
        at = float(rng.uniform(0.0, 6.0))
        while at < s[-1]:  # buildings: frontage slots along the edge
            width = float(rng.uniform(8.0, 22.0))
            if urban and rng.random() < style.building_chance or not urban and rng.random() < 0.06:
                depth = float(rng.uniform(8.0, 16.0))
                setback = side + (float(rng.uniform(0.5, 3.0)) if urban else float(rng.uniform(15.0, 45.0)))
                mid = min(at + 0.5 * width, s[-1])
                p, _ = _resample(e.xy, e.heading, s, np.array([mid]))
                o = np.array([np.interp(mid, s, e.out[:, 0]), np.interp(mid, s, e.out[:, 1])])
                o /= np.linalg.norm(o)
                c = p[0] + (setback + 0.5 * depth) * o
                t = np.array([-o[1], o[0]])
                grid = np.array([[a * 0.5 * depth, b * 0.5 * width] for a in (-1, 0, 1) for b in (-1, 0, 1)])
                probe = c + grid @ np.array([o, t])
                radius = 0.5 * math.hypot(width, depth)
                if not paved(probe, margin=side + 0.3).any() and free(c[0], c[1], radius):
                    height = float(rng.uniform(6.0, 28.0)) if urban else float(rng.uniform(5.0, 10.0))
                    _building(mb, c, math.atan2(o[1], o[0]), width, depth, height, rng)
                    taken.append((c[0], c[1], radius))
            at += width + float(rng.uniform(0.0, 4.0))
        at = float(rng.uniform(0.0, style.tree_spacing))
        while at < s[-1]:  # trees: on the sidewalk (urban) or scattered on the verge
            p, _ = _resample(e.xy, e.heading, s, np.array([at]))
            o = np.array([np.interp(at, s, e.out[:, 0]), np.interp(at, s, e.out[:, 1])])
            o /= np.linalg.norm(o)
            lateral = side - 0.9 if urban else side + float(rng.exponential(12.0)) + 2.0
            c = p[0] + lateral * o
            if not paved(c[None], margin=1.2).any() and free(c[0], c[1], 1.5):
                r = _tree(mb, c[0], c[1], rng, small=urban)
                taken.append((c[0], c[1], 0.5 * r))
            at += float(rng.uniform(0.5, 1.5)) * style.tree_spacing


# ----------------------------------------------------------------------------- traffic lights


def _light_heads(road: RoadNetwork, paved: _Paved, mb: MeshBuilder) -> list[LightHead]:
    """A head over the far side of the junction for each lane with a signalled stop
    line, hung from a mast arm on a pole at the right-hand roadside."""
    heads = []
    light_index = {lt.name: k for k, lt in enumerate(road.lights)}
    for sl in road.stop_lines:
        if not sl.light:
            continue
        ln = road.lane(sl.lane)
        succ = [road.lane(j) for j in ln.successors]
        ahead = next((c for c in succ if c.turn == "straight"), succ[0] if succ else None)
        if ahead is not None:
            xy, heading = ahead.xy[-1], float(ahead.heading[-1])
        else:
            (xy,), heading = road.to_cartesian(ln.id, np.array([ln.length + 15.0]), np.array([0.0]))
            heading = float(heading[0])
        right = np.array([math.sin(heading), -math.cos(heading)])
        reach = 0.5
        while reach < 25.0 and paved((xy + reach * right)[None]).any():
            reach += 0.5
        pole = xy + (reach + 1.0) * right
        k = len(heads)
        facing = heading + math.pi
        centre = np.array([xy[0], xy[1], HEAD_Z])
        heads.append(LightHead(light_index[sl.light], sl.light, centre, facing))
        mb.add(cylinder(pole[0], pole[1], 0.12, 0.0, HEAD_Z + 0.9, sides=6), mt.POLE_MAT)
        arm_len = float(np.linalg.norm(pole - xy))
        arm = transform(box(-0.06, 0.06, 0.0, arm_len, HEAD_Z + 0.62, HEAD_Z + 0.74), heading + math.pi,
                        (xy[0], xy[1], 0.0))
        mb.add(arm, mt.POLE_MAT)
        w, d, h = HEAD_SIZE
        housing = box(-0.5 * d, 0.5 * d, -0.5 * w, 0.5 * w, HEAD_Z - 0.5 * h, HEAD_Z + 0.5 * h)
        mb.add(transform(housing, facing, (xy[0], xy[1], 0.0)), mt.HOUSING_MAT, owner=k)
        mb.add(transform(box(-0.5 * d - 0.01, -0.5 * d, -0.45, 0.45, HEAD_Z - 0.65, HEAD_Z + 0.65), facing,
                         (xy[0], xy[1], 0.0)), mt.HOUSING_MAT, owner=k)
        for code, dz in ((2, 0.31), (1, 0.0), (0, -0.31)):  # red on top, yellow, green at the bottom
            lamp = box(0.5 * d, 0.5 * d + 0.025, -0.12, 0.12, HEAD_Z + dz - 0.12, HEAD_Z + dz + 0.12)
            mb.add(transform(lamp, facing, (xy[0], xy[1], 0.0)), mt.LAMP_MAT, owner=k, lamp=code)
    return heads


# ----------------------------------------------------------------------------- the scene


def build_static_scene(road: RoadNetwork, rng: np.random.Generator, style: SceneStyle | None = None) -> StaticScene:
    style = style or SceneStyle()
    urban = style.urban if style.urban is not None else max(ln.speed_limit for ln in road.lanes) < URBAN_SPEED
    mb = MeshBuilder()
    hulls = _junction_hulls(road)
    paved = _Paved(road, hulls)
    _surfaces(road, hulls, mb, style)
    lines = marking_lines(road)
    _paint(road, lines, style, rng, mb)
    edges = _outer_edges(road, paved)
    _edge_structures(edges, urban, style, mb)
    heads = _light_heads(road, paved, mb)
    _props(edges, paved, urban, style, rng, mb)
    return StaticScene(mb.build(), tuple(lines), tuple(heads), style)
