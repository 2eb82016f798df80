"""Shadows of the static scene (buildings, trees, poles, rails) on the ground.

The static scene and the sun do not move during a scenario, so their shadows
are computed once: a grid over the road and its surroundings, one ray per
cell from just above the ground towards the sun (Open3D occlusion test). The
shader reads the grid bilinearly for every ground pixel, which softens the
shadow edges over one cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from sim.types import frozen_array

MAX_CELLS = 1_500_000
MARGIN = 25.0  # [m] beyond the lanes' bounding box
PROBE_Z = 0.17  # [m] rays start just above the sidewalks (0.15 m)


@dataclass(frozen=True, eq=False)
class ShadowMap:
    occlusion: np.ndarray  # (ny, nx) float32, 1 where the static scene blocks the sun
    x0: float  # [m] world x of cell (0, 0)'s centre
    y0: float  # [m]
    cell: float  # [m]

    def __post_init__(self):
        object.__setattr__(self, "occlusion", frozen_array(self.occlusion, np.float32))

    def params(self) -> np.ndarray:
        """(3,) x0, y0, 1 / cell for the shading kernel."""
        return np.array([self.x0, self.y0, 1.0 / self.cell])


def empty_shadow_map() -> ShadowMap:
    return ShadowMap(np.zeros((2, 2), dtype=np.float32), 0.0, 0.0, 1.0)


def build_shadow_map(scene: o3d.t.geometry.RaycastingScene, lanes_xy: np.ndarray, sun_dir: np.ndarray,
                     cell: float = 0.4) -> ShadowMap:
    """Occlusion of the sun over the lanes' bounding box grown by MARGIN, at `cell` [m]
    (coarser if that would exceed MAX_CELLS)."""
    if sun_dir[2] <= 0.02:
        return empty_shadow_map()
    lo, hi = lanes_xy.min(axis=0) - MARGIN, lanes_xy.max(axis=0) + MARGIN
    area = float(np.prod(hi - lo))
    cell = max(cell, math.sqrt(area / MAX_CELLS))
    nx, ny = int(math.ceil((hi[0] - lo[0]) / cell)) + 1, int(math.ceil((hi[1] - lo[1]) / cell)) + 1
    x, y = lo[0] + cell * np.arange(nx), lo[1] + cell * np.arange(ny)
    X, Y = np.meshgrid(x, y)
    rays = np.empty((ny * nx, 6), dtype=np.float32)
    rays[:, 0], rays[:, 1], rays[:, 2] = X.ravel(), Y.ravel(), PROBE_Z
    rays[:, 3:] = sun_dir
    hit = scene.test_occlusions(o3d.core.Tensor.from_numpy(rays), tnear=0.01).numpy()
    return ShadowMap(hit.reshape(ny, nx).astype(np.float32), float(lo[0]), float(lo[1]), cell)
