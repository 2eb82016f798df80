"""Constant-velocity prediction: one mode per agent, straight at its current velocity."""
from __future__ import annotations

import numpy as np

from sim.types import PerceptionOutput, Prediction


class ConstantVelocityPredictor:
    """Each tracked object keeps its velocity and yaw over the horizon (K = 1, probability 1).

    A non-finite velocity is taken as zero (the object is predicted to stay put);
    objects with a non-finite position are left out.
    """

    def predict(self, perception: PerceptionOutput, horizon: float = 5.0, dt: float = 0.1) -> Prediction:
        if not (np.isfinite(horizon) and np.isfinite(dt) and horizon > 0.0 and dt > 0.0):
            raise ValueError(f"predict needs horizon > 0 and dt > 0, got horizon={horizon!r}, dt={dt!r}")
        steps = max(int(round(horizon / dt)), 1)
        objs = [o for o in perception.objects if np.isfinite(o.x) and np.isfinite(o.y)]
        pos = np.array([[o.x, o.y] for o in objs], dtype=np.float64).reshape(-1, 2)
        vel = np.array([[o.vx, o.vy] for o in objs], dtype=np.float64).reshape(-1, 2)
        vel = np.where(np.isfinite(vel), vel, 0.0)
        yaw = np.array([o.yaw if np.isfinite(o.yaw) else 0.0 for o in objs], dtype=np.float64)
        tau = dt * np.arange(1, steps + 1)  # xy[:, :, 0] is one step after t0
        xy = pos[:, None, None, :] + tau[None, None, :, None] * vel[:, None, None, :]
        return Prediction(
            agent_ids=np.array([o.id for o in objs], dtype=np.int64),
            xy=xy,
            prob=np.ones((len(objs), 1)),
            dt=float(dt),
            t0=float(perception.t),
            length=np.array([o.length for o in objs], dtype=np.float64),
            width=np.array([o.width for o in objs], dtype=np.float64),
            yaw=np.broadcast_to(yaw[:, None, None], (len(objs), 1, steps)),
        )
