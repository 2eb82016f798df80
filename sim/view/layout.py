"""Screen layout and the world-to-screen transform of the top-down view (no pygame).

Screen pixels: x right, y down, origin at the window's top-left corner.
World: x east, y north [m]. The top-down view is north-up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE_WIDTH = 400  # [px] right column: camera, lidar, HUD
CAMERA_ASPECT = 16 / 9
PANEL_TITLE = 22  # [px] title strip of a panel
SLIDER_HEIGHT = 44  # [px] replay time slider under the top-down view
MIN_SCALE, MAX_SCALE = 0.5, 60.0  # [px/m] zoom limits


@dataclass(frozen=True)
class Rect:
    x: int  # [px] left
    y: int  # [px] top
    w: int  # [px]
    h: int  # [px]

    def contains(self, px: float, py: float) -> bool:
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + 0.5 * self.w, self.y + 0.5 * self.h

    def astuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


@dataclass(frozen=True)
class Layout:
    """Where each part of the window goes."""

    view: Rect  # top-down view
    camera: Rect  # camera panel (title strip included)
    lidar: Rect  # lidar bird's-eye panel (title strip included)
    hud: Rect  # heads-up display
    slider: Rect | None  # replay time slider, None in the live view

    @classmethod
    def for_size(cls, width: int, height: int, slider: bool = False) -> Layout:
        side = min(SIDE_WIDTH, width // 3)
        view_w = width - side
        view_h = height - (SLIDER_HEIGHT if slider else 0)
        cam_h = PANEL_TITLE + int(round(side / CAMERA_ASPECT))
        lidar_h = PANEL_TITLE + int(round(0.6 * side))
        return cls(
            view=Rect(0, 0, view_w, view_h),
            camera=Rect(view_w, 0, side, cam_h),
            lidar=Rect(view_w, cam_h, side, lidar_h),
            hud=Rect(view_w, cam_h + lidar_h, side, max(height - cam_h - lidar_h, 0)),
            slider=Rect(0, view_h, view_w, SLIDER_HEIGHT) if slider else None,
        )


@dataclass(frozen=True)
class Viewport:
    """North-up map of world metres onto the top-down view's pixels."""

    rect: Rect
    center: tuple[float, float]  # [m] world point at the rect's centre
    scale: float  # [px/m]

    def to_screen(self, xy) -> np.ndarray:
        """(..., 2) [px] screen positions of world points (..., 2) [m]."""
        q = np.asarray(xy, dtype=float)
        cx, cy = self.rect.center
        out = np.empty(q.shape)
        out[..., 0] = cx + (q[..., 0] - self.center[0]) * self.scale
        out[..., 1] = cy - (q[..., 1] - self.center[1]) * self.scale
        return out

    def to_world(self, px: float, py: float) -> tuple[float, float]:
        cx, cy = self.rect.center
        return self.center[0] + (px - cx) / self.scale, self.center[1] - (py - cy) / self.scale

    def world_box(self, margin_px: float = 0.0) -> tuple[float, float, float, float]:
        """xmin, ymin, xmax, ymax [m] of what the view shows, grown by margin_px."""
        half_w = (0.5 * self.rect.w + margin_px) / self.scale
        half_h = (0.5 * self.rect.h + margin_px) / self.scale
        return self.center[0] - half_w, self.center[1] - half_h, self.center[0] + half_w, self.center[1] + half_h


def zoom_about(center: tuple[float, float], scale: float, anchor: tuple[float, float], factor: float
               ) -> tuple[tuple[float, float], float]:
    """New (center, scale) after zooming by factor with the world point `anchor` [m] fixed on screen."""
    new_scale = float(np.clip(scale * factor, MIN_SCALE, MAX_SCALE))
    k = scale / new_scale
    return (anchor[0] + (center[0] - anchor[0]) * k, anchor[1] + (center[1] - anchor[1]) * k), new_scale


def box_corners(box) -> np.ndarray:
    """(N, 4, 2) [m] corners of boxes (N, 5) cx, cy, yaw, length, width: rear-right, front-right, front-left, rear-left."""
    b = np.reshape(np.asarray(box, dtype=float), (-1, 5))
    c, s = np.cos(b[:, 2]), np.sin(b[:, 2])
    hl, hw = 0.5 * b[:, 3], 0.5 * b[:, 4]
    along = np.array([-1.0, 1.0, 1.0, -1.0])
    across = np.array([-1.0, -1.0, 1.0, 1.0])
    x = b[:, None, 0] + along * hl[:, None] * c[:, None] - across * hw[:, None] * s[:, None]
    y = b[:, None, 1] + along * hl[:, None] * s[:, None] + across * hw[:, None] * c[:, None]
    return np.stack([x, y], axis=-1)
