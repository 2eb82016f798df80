"""Lighting presets: a sun, a sky gradient and distance haze.

Colours are linear RGB (the camera applies gamma after shading). The sun
direction points from the ground towards the sun, in the world frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.types import _freeze_fields


@dataclass(frozen=True)
class Lighting:
    name: str
    sun_dir: np.ndarray  # (3,) unit vector towards the sun, world frame
    sun: np.ndarray  # (3,) sun irradiance, linear RGB
    sky_ambient: np.ndarray  # (3,) light from the sky hemisphere on an upward surface
    ground_ambient: np.ndarray  # (3,) light bounced from the ground on a downward surface
    zenith: np.ndarray  # (3,) sky colour straight up
    horizon: np.ndarray  # (3,) sky colour at the horizon, also the haze colour
    haze_distance: float  # [m] distance at which haze covers 63 % of the colour
    shadow: float  # [0, 1] share of direct sunlight an actor's shadow removes
    sun_glow: float  # strength of the glow around the sun in the sky
    lamp_gain: float  # radiance of a lit traffic lamp or vehicle light
    vehicle_lights: bool  # head and tail lights glow

    def __post_init__(self):
        _freeze_fields(self, ("sun_dir", "sun", "sky_ambient", "ground_ambient", "zenith", "horizon"))


def _sun_dir(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def make_lighting(name: str, sun_azimuth_deg: float = 35.0) -> Lighting:
    """The preset `name` ("day", "dusk", "overcast") with the sun at the given azimuth."""
    if name == "day":
        return Lighting(name, _sun_dir(52.0, sun_azimuth_deg), sun=np.array([1.05, 0.98, 0.90]) * 2.2,
                        sky_ambient=np.array([0.40, 0.48, 0.62]), ground_ambient=np.array([0.20, 0.19, 0.17]),
                        zenith=np.array([0.16, 0.32, 0.72]), horizon=np.array([0.62, 0.74, 0.90]),
                        haze_distance=900.0, shadow=0.85, sun_glow=0.35, lamp_gain=3.0, vehicle_lights=False)
    if name == "dusk":
        return Lighting(name, _sun_dir(7.0, sun_azimuth_deg), sun=np.array([1.0, 0.52, 0.26]) * 1.5,
                        sky_ambient=np.array([0.20, 0.18, 0.27]), ground_ambient=np.array([0.09, 0.06, 0.05]),
                        zenith=np.array([0.10, 0.12, 0.30]), horizon=np.array([0.85, 0.46, 0.30]),
                        haze_distance=500.0, shadow=0.9, sun_glow=0.9, lamp_gain=4.0, vehicle_lights=True)
    if name == "overcast":
        return Lighting(name, _sun_dir(60.0, sun_azimuth_deg), sun=np.array([0.95, 0.95, 0.95]) * 0.4,
                        sky_ambient=np.array([0.66, 0.68, 0.71]), ground_ambient=np.array([0.22, 0.22, 0.21]),
                        zenith=np.array([0.45, 0.48, 0.52]), horizon=np.array([0.66, 0.68, 0.70]),
                        haze_distance=350.0, shadow=0.35, sun_glow=0.0, lamp_gain=3.0, vehicle_lights=False)
    raise ValueError(f"unknown lighting {name!r}; expected one of ('day', 'dusk', 'overcast')")
