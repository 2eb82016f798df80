"""Ground-truth perception in the same output type as learned perception.

The oracle may read the simulator's state (it is the one place in perception
allowed to). Optional Gaussian noise on positions and velocities comes from a
generator seeded by the run, so noisy runs stay reproducible.

Given the rig's `sensors` (sim.sensors.config.SensorConfig), the oracle also
follows their fault schedule as a perfect health monitor would
(perception.health.scheduled_health): with one sensor lost it reports only the
objects within the range the other covers; with both lost it reports no fresh
objects, only the last ones predicted forward at constant velocity for
`memory` seconds. Without faults its output is what it was without `sensors`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from perception.health import HealthConfig, scheduled_health
from sim.types import NOMINAL, PerceptionOutput, TrackedObject


class OraclePerception:
    name = "oracle"

    def __init__(self, position_noise: float = 0.0, velocity_noise: float = 0.0, max_range: float = 120.0,
                 seed: np.random.SeedSequence | int = 0, sensors=None, health: HealthConfig = HealthConfig(),
                 memory: float = 0.3):
        self.position_noise = position_noise  # [m] std
        self.velocity_noise = velocity_noise  # [m/s] std
        self.max_range = max_range  # [m]
        self.rng = np.random.default_rng(seed)
        self.sensors = sensors  # the rig whose fault schedule is followed; None: always nominal
        self.health = health
        # [s] how long the last objects are predicted forward once no sensor works (learned perception's tracker
        # drops a track after three missed cycles, 0.3 s at 10 Hz)
        self.memory = memory
        self._last: tuple[float, tuple[TrackedObject, ...]] = (-np.inf, ())  # time [s] and objects last seen

    def __call__(self, world) -> PerceptionOutput:
        ego = world.ego_state()
        health = scheduled_health(self.sensors, ego.t, self.health) if self.sensors is not None else NOMINAL
        reach = min(self.max_range, health.trusted_range)
        if health.mode == "untrusted":
            return PerceptionOutput(t=ego.t, objects=self._predicted(ego.t), light_states=world.light_states(),
                                    range=reach, health=health)
        table = world.actor_table()
        active = world.actor_active()
        cls = world.actor_classes()
        length, width = world.actor_sizes()
        dist = np.hypot(table[:, 0] - ego.x, table[:, 1] - ego.y)
        visible = np.flatnonzero(active & (dist <= reach))
        noise_p = self.rng.normal(0.0, 1.0, (len(visible), 2)) * self.position_noise
        noise_v = self.rng.normal(0.0, 1.0, (len(visible), 2)) * self.velocity_noise
        cov = np.diag([self.position_noise**2 + 1e-4] * 2 + [self.velocity_noise**2 + 1e-4] * 2)
        objects = []
        for k, i in enumerate(visible):
            cx, cy, yaw, v, _ = table[i]
            objects.append(TrackedObject(
                id=int(i + 1), cls=int(cls[i]),
                x=float(cx + noise_p[k, 0]), y=float(cy + noise_p[k, 1]), yaw=float(yaw),
                vx=float(v * np.cos(yaw) + noise_v[k, 0]), vy=float(v * np.sin(yaw) + noise_v[k, 1]),
                length=float(length[i]), width=float(width[i]), covariance=cov))
        self._last = (ego.t, tuple(objects))
        return PerceptionOutput(t=ego.t, objects=tuple(objects), light_states=world.light_states(), range=reach,
                                health=health)

    def _predicted(self, t: float) -> tuple[TrackedObject, ...]:
        """The objects last seen, moved at their velocity to t [s]; none once they are older than `memory`."""
        seen, objects = self._last
        if t - seen > self.memory:
            return ()
        return tuple(dataclasses.replace(o, x=o.x + o.vx * (t - seen), y=o.y + o.vy * (t - seen)) for o in objects)
