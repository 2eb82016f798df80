"""Meshes of the moving actors: cars, vans, trucks, pedestrians and cyclists.

Each mesh is in the actor's own frame: origin at the centre of its box on the
ground, x forward, z up. A vehicle fills the simulator's box exactly (length
along x, width along y) up to a height drawn here, so projected 3D boxes and
the rendered pixels agree; pedestrians and cyclists keep their proportions
inside theirs. Every part is a closed convex solid wound outwards (the actor
kernels skip faces turned away). Colours, heights and models come from the
generator passed in, one draw sequence per actor in actor order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sim.sensors import materials as mt
from sim.sensors.frames import SEMANTIC_ID
from sim.sensors.meshes import Mesh, MeshBuilder, box, concat_meshes, outward, profile_prism
from sim.types import CLASS_NAMES, CYCLIST, PEDESTRIAN, TRUCK, frozen_array


@dataclass(frozen=True, eq=False)
class ActorMeshes:
    """All actors' meshes in their own frames, concatenated (triangles grouped by actor)."""

    mesh: Mesh  # owner = actor index (row in world.actor_table()), instance = track id
    tri_start: np.ndarray  # (N + 1,) int, actor i owns triangles tri_start[i]:tri_start[i + 1]
    extents: np.ndarray  # (N, 6) [m] each mesh's box in its own frame: x0, x1, y0, y1, z0, z1
    model: tuple[str, ...]  # per actor: "sedan", "hatchback", "suv", "van", "truck", "pedestrian", "cyclist"

    def __post_init__(self):
        object.__setattr__(self, "tri_start", frozen_array(self.tri_start, np.int64))
        object.__setattr__(self, "extents", frozen_array(self.extents))


class _Parts(MeshBuilder):
    """A MeshBuilder whose parts are closed and convex: each is wound outwards."""

    def add(self, part, material, **kw) -> None:
        super().add(outward(part), material, **kw)


def _wheel(x: float, y0: float, y1: float, r: float):
    a = np.linspace(0.0, 2.0 * math.pi, 6, endpoint=False) + math.pi / 6.0
    return profile_prism(np.column_stack([x + r * np.cos(a), r + r * np.sin(a)]), y0, y1)


def _split_glass(mb: MeshBuilder, part, paint: mt.Material, glass_if) -> None:
    """Add a part, faces whose normal satisfies glass_if(normal) in glass, the rest in paint."""
    v, t = outward(part)
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    glass = np.array([glass_if(k) for k in n], dtype=bool)
    mb.add((v, t[glass]), mt.GLASS_MAT)
    mb.add((v, t[~glass]), paint)


def _lights(mb: MeshBuilder, L: float, W: float, z0: float, z1: float) -> None:
    for side in (-1.0, 1.0):
        y0, y1 = sorted((side * (0.5 * W - 0.12), side * (0.5 * W - 0.42)))
        mb.add(box(0.5 * L - 0.04, 0.5 * L, y0, y1, z0, z1), mt.HEADLIGHT_MAT)
        mb.add(box(-0.5 * L, -0.5 * L + 0.04, y0, y1, z0, z1), mt.TAILLIGHT_MAT)


def _car(L: float, W: float, model: str, paint: mt.Material, rng) -> tuple[Mesh, float]:
    mb = _Parts()
    H = {"sedan": 1.45, "hatchback": 1.5, "suv": 1.75}[model] * float(rng.uniform(0.97, 1.04))
    r = 0.31 if model != "suv" else 0.36
    belt = 0.55 * H + (0.08 if model == "suv" else 0.0)
    bottom = 0.28
    hw = 0.5 * W
    mb.add(profile_prism([(-0.5 * L + 0.05, bottom), (0.5 * L - 0.05, bottom), (0.5 * L - 0.05, belt - 0.18),
                          (0.5 * L - 0.35, belt), (-0.5 * L + 0.15, belt), (-0.5 * L + 0.05, belt - 0.1)],
                         -hw, hw), paint)
    if model == "sedan":
        cabin = [(-0.3 * L, belt), (0.2 * L, belt), (0.02 * L, H), (-0.2 * L, H), (-0.36 * L, belt + 0.12)]
    elif model == "hatchback":
        cabin = [(-0.47 * L, belt), (0.2 * L, belt), (0.02 * L, H), (-0.42 * L, H), (-0.48 * L, belt + 0.2)]
    else:
        cabin = [(-0.46 * L, belt), (0.24 * L, belt), (0.1 * L, H), (-0.45 * L, H)]
    _split_glass(mb, profile_prism(cabin, -0.86 * hw, 0.86 * hw), paint, lambda n: n[2] < 0.8)
    # bumpers reach the ends of the box
    mb.add(box(0.5 * L - 0.05, 0.5 * L, -hw + 0.05, hw - 0.05, bottom, bottom + 0.22), mt.BUMPER_MAT)
    mb.add(box(-0.5 * L, -0.5 * L + 0.05, -hw + 0.05, hw - 0.05, bottom, bottom + 0.22), mt.BUMPER_MAT)
    for side in (-1.0, 1.0):
        for x in (0.5 * L - 0.85, -0.5 * L + 0.9):
            y0, y1 = sorted((side * (hw - 0.02), side * (hw - 0.25)))
            mb.add(_wheel(x, y0, y1, r), mt.TYRE_MAT)
    _lights(mb, L, W, belt - 0.2, belt - 0.06)
    return mb.build(), H


def _van(L: float, W: float, paint: mt.Material, rng) -> tuple[Mesh, float]:
    mb = _Parts()
    H = float(rng.uniform(2.1, 2.5))
    hw = 0.5 * W
    mb.add(profile_prism([(-0.5 * L, 0.35), (0.5 * L - 0.05, 0.35), (0.5 * L - 0.05, 0.95), (0.5 * L - 0.6, 1.1),
                          (-0.5 * L, 1.1)], -hw, hw), paint)
    upper = profile_prism([(-0.5 * L, 1.1), (0.5 * L - 0.6, 1.1), (0.5 * L - 1.3, H), (-0.5 * L, H)],
                          -hw + 0.02, hw - 0.02)
    _split_glass(mb, upper, paint, lambda n: n[0] > 0.4)
    for side in (-1.0, 1.0):
        y0, y1 = sorted((side * hw, side * (hw - 0.015)))
        mb.add(box(0.5 * L - 2.0, 0.5 * L - 1.05, y0, y1, 1.2, H - 0.25), mt.GLASS_MAT)
        for x in (0.5 * L - 0.9, -0.5 * L + 1.0):
            yw0, yw1 = sorted((side * (hw - 0.02), side * (hw - 0.27)))
            mb.add(_wheel(x, yw0, yw1, 0.34), mt.TYRE_MAT)
    mb.add(box(0.5 * L - 0.05, 0.5 * L, -hw + 0.05, hw - 0.05, 0.35, 0.6), mt.BUMPER_MAT)
    mb.add(box(-0.5 * L, -0.5 * L + 0.05, -hw + 0.05, hw - 0.05, 0.35, 0.6), mt.BUMPER_MAT)
    _lights(mb, L, W, 0.75, 0.92)
    return mb.build(), H


def _truck(L: float, W: float, paint: mt.Material, rng) -> tuple[Mesh, float]:
    mb = _Parts()
    H = float(rng.uniform(3.6, 4.0))
    hw = 0.5 * W
    cab = min(2.4, 0.3 * L)
    cab_h = float(rng.uniform(2.9, 3.2))
    box_colour = mt.TRUCK_BOX_COLOURS[int(rng.integers(len(mt.TRUCK_BOX_COLOURS)))]
    cargo = mt.Material(tuple(box_colour), "truck", mt.PLAIN, 0.5)
    x_cab = 0.5 * L - cab
    _split_glass(mb, profile_prism([(x_cab, 0.6), (0.5 * L, 0.6), (0.5 * L, 1.7), (0.5 * L - 0.25, cab_h),
                                    (x_cab, cab_h)], -hw + 0.05, hw - 0.05), paint, lambda n: n[0] > 0.5)
    mb.add(box(0.5 * L - 0.05, 0.5 * L, -hw + 0.05, hw - 0.05, 0.45, 0.75), mt.BUMPER_MAT)
    mb.add(box(-0.5 * L, x_cab - 0.3, -hw, hw, 1.15, H), cargo)
    mb.add(box(-0.5 * L + 0.3, 0.5 * L - 0.2, -0.45 * W, 0.45 * W, 0.55, 1.15), mt.BUMPER_MAT)
    axles = [0.5 * L - 1.2, x_cab - 1.0 - 0.35 * (L - cab), -0.5 * L + 2.4, -0.5 * L + 1.2]
    for side in (-1.0, 1.0):
        y0, y1 = sorted((side * hw, side * (hw - 0.35)))
        for x in axles:
            mb.add(_wheel(x, y0, y1, 0.5), mt.TYRE_MAT)
        yl0, yl1 = sorted((side * (hw - 0.1), side * (hw - 0.35)))
        mb.add(box(-0.5 * L, -0.5 * L + 0.04, yl0, yl1, 1.2, 1.35), mt.TAILLIGHT_MAT)
        mb.add(box(0.5 * L - 0.04, 0.5 * L, yl0, yl1, 0.8, 0.95), mt.HEADLIGHT_MAT)
    return mb.build(), H


def _person(mb: MeshBuilder, x: float, y: float, H: float, shirt: mt.Material, trousers: mt.Material,
            skin: mt.Material, seated: bool = False) -> None:
    """A standing (or, on a bike, seated and leaning) person centred at (x, y), H tall."""
    head = 0.13 * H
    if seated:
        mb.add(box(x - 0.25, x + 0.05, y - 0.2, y + 0.2, 0.55 * H, 0.82 * H), shirt)
        mb.add(box(x - 0.05, x + 0.25, y - 0.22, y - 0.1, 0.32, 0.62 * H), trousers)
        mb.add(box(x - 0.05, x + 0.25, y + 0.1, y + 0.22, 0.32, 0.62 * H), trousers)
        mb.add(box(x + 0.0, x + 0.35, y - 0.24, y + 0.24, 0.68 * H, 0.75 * H), shirt)
        mb.add(box(x - 0.08, x + 0.14, y - 0.11, y + 0.11, H - head, H), skin)
        return
    leg = 0.47 * H
    mb.add(box(x - 0.09, x + 0.09, y - 0.17, y - 0.03, 0.0, leg), trousers)
    mb.add(box(x - 0.09, x + 0.09, y + 0.03, y + 0.17, 0.0, leg), trousers)
    mb.add(box(x - 0.12, x + 0.12, y - 0.2, y + 0.2, leg, H - head - 0.04), shirt)
    mb.add(box(x - 0.06, x + 0.06, y - 0.3, y - 0.2, leg + 0.05, H - head - 0.08), shirt)
    mb.add(box(x - 0.06, x + 0.06, y + 0.2, y + 0.3, leg + 0.05, H - head - 0.08), shirt)
    mb.add(box(x - 0.1, x + 0.1, y - 0.09, y + 0.09, H - head, H), skin)


def _clothes(rng):
    pick = lambda: mt.CLOTH_COLOURS[int(rng.integers(len(mt.CLOTH_COLOURS)))]  # noqa: E731
    return (mt.CLOTH_MAT.tinted(pick()), mt.CLOTH_MAT.tinted(pick()),
            mt.SKIN_MAT.tinted(mt.SKIN_COLOURS[int(rng.integers(len(mt.SKIN_COLOURS)))]))


def _pedestrian(L: float, W: float, rng) -> tuple[Mesh, float]:
    mb = _Parts()
    H = float(rng.uniform(1.55, 1.9))
    shirt, trousers, skin = _clothes(rng)
    _person(mb, 0.0, 0.0, H, shirt, trousers, skin)
    return _fit(mb.build(), L, W), H


def _cyclist(L: float, W: float, rng) -> tuple[Mesh, float]:
    mb = _Parts()
    shirt, trousers, skin = _clothes(rng)
    H = float(rng.uniform(1.65, 1.85))
    r = 0.34
    for x in (-0.55, 0.55):
        mb.add(_wheel(x, -0.02, 0.02, r), mt.BIKE_MAT)
    frame = mt.BIKE_MAT.tinted(mt.CAR_COLOURS[int(rng.integers(len(mt.CAR_COLOURS)))])
    mb.add(profile_prism([(-0.55, r - 0.02), (0.55, r - 0.02), (0.35, 0.85), (-0.2, 0.85)], -0.02, 0.02), frame)
    _person(mb, -0.1, 0.0, H, shirt, trousers, skin, seated=True)
    return _fit(mb.build(), L, W), H


def _fit(mesh: Mesh, L: float, W: float) -> Mesh:
    """Centre a mesh on the origin and shrink it in x and y (keeping its proportions)
    until it fits inside [-L/2, L/2] x [-W/2, W/2]."""
    v = np.array(mesh.vertices)
    lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
    scale = min(1.0, L / (hi[0] - lo[0]), W / (hi[1] - lo[1]))
    v[:, :2] = (v[:, :2] - 0.5 * (lo + hi)) * scale
    return replace(mesh, vertices=v)


def actor_mesh(cls: int, length: float, width: float, rng: np.random.Generator) -> tuple[Mesh, float, str]:
    """One actor's mesh in its own frame, its height [m] and model name."""
    if cls == PEDESTRIAN:
        mesh, h = _pedestrian(length, width, rng)
        model = "pedestrian"
    elif cls == CYCLIST:
        mesh, h = _cyclist(length, width, rng)
        model = "cyclist"
    else:
        colour = mt.CAR_COLOURS[int(rng.choice(len(mt.CAR_COLOURS), p=mt.CAR_COLOUR_WEIGHTS))]
        paint = mt.Material(tuple(colour * rng.uniform(0.9, 1.1)), "car", mt.CARPAINT, 0.6)
        if cls == TRUCK or length > 8.0:
            mesh, h = _truck(length, width, paint, rng)
            model = "truck"
        elif length > 5.0:
            mesh, h = _van(length, width, paint, rng)
            model = "van"
        else:
            model = ("sedan", "hatchback", "suv")[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
            mesh, h = _car(length, width, model, paint, rng)
    mesh = replace(mesh, semantic=np.full(len(mesh), SEMANTIC_ID[CLASS_NAMES[cls]]))
    return mesh, h, model


def build_actor_meshes(classes: np.ndarray, lengths: np.ndarray, widths: np.ndarray,
                       rng: np.random.Generator) -> ActorMeshes:
    """Meshes for actors 0..N-1 (rows of world.actor_table()); track id = index + 1."""
    meshes, extents, models = [], [], []
    for i, (cls, length, width) in enumerate(zip(classes, lengths, widths)):
        mesh, _, model = actor_mesh(int(cls), float(length), float(width), rng)
        meshes.append(replace(mesh, instance=np.full(len(mesh), i + 1), owner=np.full(len(mesh), i)))
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        extents.append([lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]])
        models.append(model)
    counts = [len(m) for m in meshes]
    return ActorMeshes(concat_meshes(meshes), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       np.array(extents, dtype=float).reshape(-1, 6), tuple(models))
