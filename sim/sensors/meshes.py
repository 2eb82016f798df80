"""Triangle meshes: primitives and a builder that flattens materials per triangle.

Primitives return (vertices (V, 3) [m], triangles (T, 3) int). Winding does
not matter to Open3D (two-sided) and the shader turns every normal towards the
viewer; actor meshes are closed convex parts wound outwards (`outward`), so
the actor kernels can skip the triangles that face away from the sensor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.sensors.frames import SEMANTIC_ID
from sim.sensors.materials import Material
from sim.types import frozen_array

_BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


@dataclass(frozen=True)
class Mesh:
    """Triangles with per-triangle attributes (T triangles)."""

    vertices: np.ndarray  # (V, 3) [m]
    triangles: np.ndarray  # (T, 3) int vertex indices
    albedo: np.ndarray  # (T, 3) float32 linear RGB
    semantic: np.ndarray  # (T,) uint8 index into SEMANTIC_CLASSES
    shading: np.ndarray  # (T,) uint8 shading model (sim.sensors.materials)
    reflectivity: np.ndarray  # (T,) float32 lidar reflectivity
    instance: np.ndarray  # (T,) int32 actor track id, 0 for none
    owner: np.ndarray  # (T,) int32 what the triangle belongs to: actor row or light head, -1 for none
    lamp: np.ndarray  # (T,) int8 lamp colour code (0 green, 1 yellow, 2 red), -1 for no lamp

    def __post_init__(self):
        object.__setattr__(self, "vertices", frozen_array(self.vertices))
        object.__setattr__(self, "triangles", frozen_array(self.triangles, np.int64))
        for name, dtype in (("albedo", np.float32), ("semantic", np.uint8), ("shading", np.uint8),
                            ("reflectivity", np.float32), ("instance", np.int32), ("owner", np.int32),
                            ("lamp", np.int8)):
            object.__setattr__(self, name, frozen_array(getattr(self, name), dtype))

    def __len__(self) -> int:
        return int(self.triangles.shape[0])

    def triangle_corners(self) -> np.ndarray:
        """(T, 3, 3) [m] the corners of every triangle."""
        return self.vertices[self.triangles]

    def normals(self) -> np.ndarray:
        """(T, 3) unit normals (zero for degenerate triangles)."""
        c = self.triangle_corners()
        n = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


class MeshBuilder:
    """Collects parts with their materials; `build()` returns one Mesh."""

    def __init__(self):
        self._verts: list[np.ndarray] = []
        self._tris: list[np.ndarray] = []
        self._attrs: list[tuple] = []
        self._count = 0

    def add(self, part: tuple[np.ndarray, np.ndarray], material: Material, *, instance: int = 0,
            owner: int = -1, lamp: int = -1) -> None:
        verts, tris = part
        verts = np.asarray(verts, dtype=float).reshape(-1, 3)
        tris = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
        if len(tris) == 0:
            return
        self._verts.append(verts)
        self._tris.append(tris + self._count)
        self._count += len(verts)
        self._attrs.append((len(tris), material, instance, owner, lamp))

    def build(self) -> Mesh:
        if not self._tris:
            return Mesh(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros(0),
                        np.zeros(0), np.zeros(0), np.zeros(0))
        n = [a[0] for a in self._attrs]
        return Mesh(
            vertices=np.concatenate(self._verts), triangles=np.concatenate(self._tris),
            albedo=np.repeat([a[1].albedo for a in self._attrs], n, axis=0),
            semantic=np.repeat([SEMANTIC_ID[a[1].semantic] for a in self._attrs], n),
            shading=np.repeat([a[1].shading for a in self._attrs], n),
            reflectivity=np.repeat([a[1].reflectivity for a in self._attrs], n),
            instance=np.repeat([a[2] for a in self._attrs], n),
            owner=np.repeat([a[3] for a in self._attrs], n),
            lamp=np.repeat([a[4] for a in self._attrs], n))


def concat_meshes(meshes: list[Mesh]) -> Mesh:
    meshes = [m for m in meshes if len(m)]
    if not meshes:
        return MeshBuilder().build()
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        vertices=np.concatenate([m.vertices for m in meshes]),
        triangles=np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
        **{name: np.concatenate([getattr(m, name) for m in meshes])
           for name in ("albedo", "semantic", "shading", "reflectivity", "instance", "owner", "lamp")})


# ----------------------------------------------------------------------------- primitives


def box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, bottom: bool = True):
    """An axis-aligned box; `bottom=False` leaves out the face at z0."""
    v = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=float)
    faces = _BOX_FACES if bottom else np.delete(_BOX_FACES, [0, 1], axis=0)
    return v, faces.copy()


def profile_prism(profile_xz, y0: float, y1: float):
    """A convex side profile (K, 2) in x-z extruded from y0 to y1 (a car cabin, a wedge)."""
    p = np.asarray(profile_xz, dtype=float)
    k = len(p)
    v = np.concatenate([np.column_stack([p[:, 0], np.full(k, y0), p[:, 1]]),
                        np.column_stack([p[:, 0], np.full(k, y1), p[:, 1]])])
    tris = [[0, i, i + 1] for i in range(1, k - 1)] + [[k, k + i + 1, k + i] for i in range(1, k - 1)]
    for i in range(k):
        j = (i + 1) % k
        tris += [[i, j, k + j], [i, k + j, k + i]]
    return v, np.array(tris)


def prism(polygon_xy, z0: float, z1: float, caps: bool = True):
    """A convex polygon (K, 2) extruded vertically from z0 to z1."""
    p = np.asarray(polygon_xy, dtype=float)
    k = len(p)
    v = np.concatenate([np.column_stack([p, np.full(k, z0)]), np.column_stack([p, np.full(k, z1)])])
    tris = []
    if caps:
        tris += [[0, i + 1, i] for i in range(1, k - 1)] + [[k, k + i, k + i + 1] for i in range(1, k - 1)]
    for i in range(k):
        j = (i + 1) % k
        tris += [[i, j, k + j], [i, k + j, k + i]]
    return v, np.array(tris)


def cylinder(cx: float, cy: float, radius: float, z0: float, z1: float, sides: int = 6):
    a = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    return prism(np.column_stack([cx + radius * np.cos(a), cy + radius * np.sin(a)]), z0, z1)


def blob(centre, radii, rng: np.random.Generator | None = None, rings: int = 4, sectors: int = 7,
         jitter: float = 0.0):
    """A low-polygon ellipsoid (a tree crown), vertices jittered radially by up to `jitter`."""
    cx, cy, cz = centre
    verts = [[0.0, 0.0, 1.0]]
    for i in range(1, rings):
        th = np.pi * i / rings
        for j in range(sectors):
            ph = 2.0 * np.pi * (j + 0.5 * (i % 2)) / sectors
            verts.append([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
    verts.append([0.0, 0.0, -1.0])
    v = np.array(verts)
    if rng is not None and jitter > 0.0:
        v *= 1.0 + rng.uniform(-jitter, jitter, (len(v), 1))
    v = v * np.asarray(radii, dtype=float) + (cx, cy, cz)
    tris = [[0, 1 + j, 1 + (j + 1) % sectors] for j in range(sectors)]
    for i in range(rings - 2):
        a, b = 1 + i * sectors, 1 + (i + 1) * sectors
        for j in range(sectors):
            jn = (j + 1) % sectors
            tris += [[a + j, b + j, b + jn], [a + j, b + jn, a + jn]]
    last = len(v) - 1
    a = 1 + (rings - 2) * sectors
    tris += [[last, a + (j + 1) % sectors, a + j] for j in range(sectors)]
    return v, np.array(tris)


def ribbon(left_xy, right_xy, z: float | tuple[float, float] = 0.0):
    """A strip between two polylines of the same length N >= 2; z is one height, or (left, right)."""
    left, right = np.asarray(left_xy, dtype=float), np.asarray(right_xy, dtype=float)
    n = len(left)
    zl, zr = (z, z) if np.isscalar(z) else z
    v = np.concatenate([np.column_stack([left, np.full(n, zl)]), np.column_stack([right, np.full(n, zr)])])
    i = np.arange(n - 1)
    tris = np.concatenate([np.column_stack([i, n + i, n + i + 1]), np.column_stack([i, n + i + 1, i + 1])])
    return v, tris


def wall(xy, z0: float, z1: float):
    """A vertical strip standing on the polyline xy (N, 2) from z0 to z1."""
    p = np.asarray(xy, dtype=float)
    n = len(p)
    v = np.concatenate([np.column_stack([p, np.full(n, z0)]), np.column_stack([p, np.full(n, z1)])])
    i = np.arange(n - 1)
    tris = np.concatenate([np.column_stack([i, i + 1, n + i + 1]), np.column_stack([i, n + i + 1, n + i])])
    return v, tris


def fan(polygon_xy, z: float):
    """A convex polygon (K, 2) as a flat triangle fan at height z."""
    p = np.asarray(polygon_xy, dtype=float)
    k = len(p)
    v = np.column_stack([p, np.full(k, z)])
    return v, np.array([[0, i, i + 1] for i in range(1, k - 1)])


def outward(part):
    """The same convex part with every triangle wound so its normal (e1 x e2) points
    away from the part's centre, as the actor kernels' back-face test expects."""
    v, t = part
    t = np.array(t)
    c = v[t]
    n = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    flip = np.einsum("ij,ij->i", n, c.mean(axis=1) - v.mean(axis=0)) < 0.0
    t[flip] = t[flip][:, [0, 2, 1]]
    return v, t


def transform(part, yaw: float = 0.0, offset=(0.0, 0.0, 0.0)):
    """Rotate a part about z by yaw, then shift it."""
    v, t = part
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return v @ rot.T + np.asarray(offset, dtype=float), t
