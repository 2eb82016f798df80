"""Surface materials: shading model, colour, semantic class and lidar reflectivity.

Every triangle of the scene carries a `Material` (flattened into per-triangle
arrays by sim.sensors.meshes.MeshBuilder). Colours are linear RGB albedo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.sensors.frames import SEMANTIC_ID

# shading models, interpreted by the camera's shading kernel
PLAIN, ASPHALT, PAINT, GRASS, FACADE, GLASS, LAMP, CARPAINT, FOLIAGE, HEADLIGHT, TAILLIGHT, TYRE = range(12)


@dataclass(frozen=True)
class Material:
    albedo: tuple[float, float, float]  # linear RGB
    semantic: str  # a name from SEMANTIC_CLASSES
    shading: int = PLAIN
    reflectivity: float = 0.2  # lidar return strength at normal incidence, [0, 1]

    def __post_init__(self):
        if self.semantic not in SEMANTIC_ID:
            raise ValueError(f"Material.semantic: unknown class {self.semantic!r}")

    def tinted(self, albedo) -> Material:
        return Material(tuple(float(c) for c in albedo), self.semantic, self.shading, self.reflectivity)


def srgb_to_linear(rgb) -> np.ndarray:
    """sRGB in [0, 255] to linear [0, 1]."""
    c = np.asarray(rgb, dtype=float) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lin(r, g, b) -> tuple[float, float, float]:
    return tuple(float(c) for c in srgb_to_linear((r, g, b)))


ASPHALT_MAT = Material(_lin(82, 82, 86), "road", ASPHALT, 0.08)
SHOULDER_MAT = Material(_lin(92, 90, 88), "road", ASPHALT, 0.09)
WHITE_PAINT = Material(_lin(225, 225, 220), "lane_marking", PAINT, 0.75)
YELLOW_PAINT = Material(_lin(230, 180, 40), "lane_marking", PAINT, 0.7)
CROSSWALK_PAINT = Material(_lin(230, 230, 225), "crosswalk", PAINT, 0.75)
STOP_PAINT = Material(_lin(232, 232, 228), "stop_line", PAINT, 0.75)
CURB_MAT = Material(_lin(170, 168, 160), "curb", PLAIN, 0.3)
SIDEWALK_MAT = Material(_lin(150, 146, 140), "sidewalk", ASPHALT, 0.25)
GRASS_MAT = Material(_lin(92, 118, 60), "terrain", GRASS, 0.35)
BARRIER_MAT = Material(_lin(175, 178, 182), "barrier", CARPAINT, 0.5)
POLE_MAT = Material(_lin(70, 72, 75), "pole", PLAIN, 0.3)
TRUNK_MAT = Material(_lin(85, 62, 45), "vegetation", PLAIN, 0.3)
FOLIAGE_MAT = Material(_lin(55, 95, 45), "vegetation", FOLIAGE, 0.4)
HOUSING_MAT = Material(_lin(40, 40, 38), "traffic_light", PLAIN, 0.2)
LAMP_MAT = Material(_lin(30, 30, 30), "traffic_light", LAMP, 0.6)
BUILDING_MAT = Material(_lin(170, 160, 150), "building", FACADE, 0.3)
ROOF_MAT = Material(_lin(90, 88, 86), "building", PLAIN, 0.2)
GLASS_MAT = Material(_lin(30, 38, 48), "car", GLASS, 0.1)
TYRE_MAT = Material(_lin(22, 22, 24), "car", TYRE, 0.05)
HEADLIGHT_MAT = Material(_lin(225, 225, 215), "car", HEADLIGHT, 0.8)
TAILLIGHT_MAT = Material(_lin(170, 20, 20), "car", TAILLIGHT, 0.8)
BUMPER_MAT = Material(_lin(35, 35, 37), "car", PLAIN, 0.15)
SKIN_MAT = Material(_lin(200, 160, 130), "pedestrian", PLAIN, 0.3)
CLOTH_MAT = Material(_lin(60, 60, 90), "pedestrian", PLAIN, 0.3)
BIKE_MAT = Material(_lin(30, 30, 30), "cyclist", PLAIN, 0.3)

# colours with rough real-world shares: white, black, grey, silver, blue, red, ...
CAR_COLOURS = np.array([srgb_to_linear(c) for c in (
    (232, 232, 230), (25, 25, 28), (110, 112, 116), (180, 182, 186), (30, 55, 120), (150, 20, 25),
    (40, 80, 60), (200, 190, 160), (90, 40, 30), (230, 200, 40), (20, 30, 60), (150, 150, 150))])
CAR_COLOUR_WEIGHTS = np.array([0.22, 0.18, 0.14, 0.13, 0.09, 0.08, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01])
TRUCK_BOX_COLOURS = np.array([srgb_to_linear(c) for c in (
    (235, 235, 232), (210, 210, 205), (60, 90, 150), (160, 30, 30), (230, 150, 40), (90, 95, 100))])
CLOTH_COLOURS = np.array([srgb_to_linear(c) for c in (
    (40, 40, 45), (60, 70, 110), (140, 30, 40), (200, 200, 195), (70, 90, 60), (160, 120, 80), (210, 170, 40))])
SKIN_COLOURS = np.array([srgb_to_linear(c) for c in ((240, 200, 170), (200, 150, 110), (140, 95, 65), (95, 65, 45))])
FACADE_COLOURS = np.array([srgb_to_linear(c) for c in (
    (190, 175, 155), (160, 90, 70), (200, 195, 185), (130, 125, 120), (215, 205, 180), (150, 110, 85),
    (175, 180, 185))])
