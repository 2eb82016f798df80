"""The record of one closed-loop run: every physics step and every stack cycle.

Metrics are pure functions of a RunLog and the road it ran on; a log can be
saved to one compressed .npz file and loaded again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

LIGHT_CODES = {"green": 0, "yellow": 1, "red": 2}
EGO_FIELDS = ("x", "y", "yaw", "v", "a", "steer")  # ego columns; x, y at the rear axle
ACTOR_FIELDS = ("cx", "cy", "yaw", "v", "a")  # actor columns; cx, cy at the box centre
TIMING_STAGES = ("perception", "prediction", "planning", "control")


@dataclass
class RunLog:
    scenario: str
    seed: int
    dt: float  # [s] physics step
    t: np.ndarray  # (T,) [s]
    ego: np.ndarray  # (T, 6) EGO_FIELDS
    ego_length: float  # [m]
    ego_width: float  # [m]
    ego_center_offset: float  # [m] box centre ahead of the rear axle
    actor_ids: np.ndarray  # (N,) int
    actor_names: list[str]  # (N,)
    actor_cls: np.ndarray  # (N,) int, index into sim.types.CLASS_NAMES
    actor_length: np.ndarray  # (N,) [m]
    actor_width: np.ndarray  # (N,) [m]
    actors: np.ndarray  # (T, N, 5) ACTOR_FIELDS
    actor_active: np.ndarray  # (T, N) bool: present in the world at that step
    light_names: list[str]  # (L,)
    light_states: np.ndarray  # (T, L) int8, LIGHT_CODES
    route_lanes: np.ndarray  # (R,) lane ids the ego should drive
    route_xy: np.ndarray  # (P, 2) [m] route centreline polyline
    goal_s: float  # [m] arc length along route_xy where the goal is
    stack_t: np.ndarray  # (K,) [s] times of the stack cycles
    controls: np.ndarray  # (K, 2) steer [rad], accel [m/s^2]
    timings: np.ndarray  # (K, 4) [s] TIMING_STAGES
    behaviour: list[str]  # (K,) active behaviour per cycle
    plans: np.ndarray  # (K, P, 7) t, x, y, yaw, v, a, kappa of the chosen trajectory (padded with NaN)
    meta: dict = field(default_factory=dict)  # planner, perception, scenario parameters, warnings
    attention: np.ndarray | None = None  # (K, h, w) float32 attention map per cycle (NaN: none); attention on only
    relevance: np.ndarray | None = None  # (K, J, 2) tracked object id, relevance per cycle (NaN-padded); same
    # (K,) perception's health per cycle (PerceptionHealth.describe(): "nominal", "degraded: lidar empty 0.4 s")
    health: list[str] = field(default_factory=list)

    def ego_boxes(self) -> np.ndarray:
        """(T, 5) ego boxes: cx, cy, yaw, length, width."""
        yaw = self.ego[:, 2]
        out = np.empty((len(self.t), 5))
        out[:, 0] = self.ego[:, 0] + self.ego_center_offset * np.cos(yaw)
        out[:, 1] = self.ego[:, 1] + self.ego_center_offset * np.sin(yaw)
        out[:, 2] = yaw
        out[:, 3] = self.ego_length
        out[:, 4] = self.ego_width
        return out

    def actor_boxes(self, k: int) -> np.ndarray:
        """(N, 5) actor boxes at step k: cx, cy, yaw, length, width."""
        return np.column_stack([self.actors[k, :, 0], self.actors[k, :, 1], self.actors[k, :, 2],
                                self.actor_length, self.actor_width])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays, scalars = {}, {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                scalars[f.name] = value
        np.savez_compressed(path, __meta__=np.frombuffer(json.dumps(scalars).encode(), dtype=np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RunLog":
        with np.load(Path(path), allow_pickle=False) as data:
            scalars = json.loads(bytes(data["__meta__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
        return cls(**scalars, **arrays)

    def equals(self, other: "RunLog") -> bool:
        """Bit-for-bit equality of the recorded trace (timings excluded: they are wall-clock)."""
        for f in fields(self):
            if f.name in ("timings", "meta"):
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if (a is None) != (b is None):
                return False
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    return False
            elif a != b:
                return False
        return True
