"""The camera and lidar panels' source: the sensor rig rendered from the world at its own rate,
with the scenario's camera effects and faults (a dropped frame keeps the last image on screen)."""
from __future__ import annotations

import numpy as np

from sim.sensors.config import SensorConfig, sensor_config
from sim.sensors.rig import SensorRig


class RigFeed:
    """Renders camera and lidar at most `rate_hz` times per simulated second."""

    def __init__(self, world, rate_hz: float = 10.0, config: SensorConfig | None = None):
        self.rig = SensorRig(world, config or sensor_config(world.scenario.sensors))
        self.period = 1.0 / rate_hz  # [s] simulated time between sensor frames
        self._t = -np.inf
        self._camera: np.ndarray | None = None
        self._lidar: np.ndarray | None = None
        self._faults = None  # the sensors' fault state, carried from frame to frame

    def update(self, world) -> None:
        if world.t - self._t < self.period - 1e-9:
            return
        camera, lidar, self._faults = self.rig.capture(world, self._faults)
        self._t = world.t
        if camera is not None:
            self._camera = camera.image
        self._lidar = lidar.points if lidar is not None else None

    def camera_image(self) -> np.ndarray | None:
        return self._camera

    def lidar_points(self) -> np.ndarray | None:
        return self._lidar
