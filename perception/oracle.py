"""Ground-truth perception in the same output type as learned perception.

The oracle may read the simulator's state (it is the one place in perception
allowed to). Optional Gaussian noise on positions and velocities comes from a
generator seeded by the run, so noisy runs stay reproducible.
"""
from __future__ import annotations

import numpy as np

from sim.types import PerceptionOutput, TrackedObject


class OraclePerception:
    name = "oracle"

    def __init__(self, position_noise: float = 0.0, velocity_noise: float = 0.0, max_range: float = 120.0,
                 seed: np.random.SeedSequence | int = 0):
        self.position_noise = position_noise  # [m] std
        self.velocity_noise = velocity_noise  # [m/s] std
        self.max_range = max_range  # [m]
        self.rng = np.random.default_rng(seed)

    def __call__(self, world) -> PerceptionOutput:
        ego = world.ego_state()
        table = world.actor_table()
        active = world.actor_active()
        cls = world.actor_classes()
        length, width = world.actor_sizes()
        dist = np.hypot(table[:, 0] - ego.x, table[:, 1] - ego.y)
        visible = np.flatnonzero(active & (dist <= self.max_range))
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
        return PerceptionOutput(t=ego.t, objects=tuple(objects), light_states=world.light_states(),
                                range=self.max_range)
