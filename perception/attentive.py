"""Perception with goal-driven attention: any perception, then where the route says to look.

    out = inner(world)                                  objects, lanes, lights
    camera = inner.last.camera or the own camera        the frame of this cycle
    features = detector_features(camera image)          the frozen detector's features
    attention = GoalAttention(features, goal of route)  (h, w) map summing to 1
    relevance = attention mass in each object's box

The output is the inner perception's, with `attention` set and every object's
`relevance` replaced by the attention mass inside its projected box. An object
the camera does not see (behind, beside, out of the image) keeps relevance
1.0: the attention knows nothing about it, so the planner should not discount
it. When there is no camera frame (a dropped frame), the inner output passes
through unchanged.

With learned perception as the inner, its camera frame of the cycle is used;
with any other (the oracle) a camera-only SensorRig on the world renders one.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from perception.attention import (GoalAttention, detector_features, goal_encoding, object_box, pad_image,
                                  relevance, shipped_attention)
from sim.types import PerceptionOutput


class AttentivePerception:
    """Wraps a perception callable (world -> PerceptionOutput) and adds the attention map and relevances."""

    def __init__(self, inner, road, route, model: GoalAttention, detector, rig=None):
        self.inner, self.road, self.route = inner, road, route
        self.model, self.detector, self.rig = model.eval(), detector, rig
        self.name = f"{getattr(inner, 'name', 'perception')}+attention"
        self.route_s = None  # [m] ego along the route at the last cycle (search hint)
        self.last_ms = 0.0  # [ms] features and attention of the last cycle (rendering excluded)

    @classmethod
    def for_world(cls, inner, world, route, model: GoalAttention | None = None) -> "AttentivePerception":
        """The shipped attention head and detector; a camera-only rig on `world` unless `inner` keeps the
        camera frame of its cycle (learned perception)."""
        from perception.learned import LearnedPerception, shipped_detector

        rig = None
        if not isinstance(inner, LearnedPerception):
            from sim.sensors.config import sensor_config
            from sim.sensors.rig import SensorRig

            config = replace(sensor_config(world.scenario.sensors), lidar=None)
            if config.camera is None:
                raise ValueError(f"scenario '{world.scenario.name}': attention needs a camera; the `sensors:` "
                                 f"section turns it off")
            rig = SensorRig(world, config)
        return cls(inner, world.road, route, model or shipped_attention(), shipped_detector(), rig)

    def close(self) -> None:
        if self.rig is not None:
            self.rig.close()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def _camera(self, world):
        if self.rig is not None:
            return self.rig.render_camera(self.rig.snapshot(world), with_labels=False)
        return getattr(getattr(self.inner, "last", None), "camera", None)

    def __call__(self, world) -> PerceptionOutput:
        from planning.route import project_to_route

        out = self.inner(world)
        camera = self._camera(world)
        if camera is None:
            return out
        ego = world.ego_state()
        self.route_s, _ = project_to_route(self.route, np.array([ego.x, ego.y]), hint_s=self.route_s, yaw=ego.yaw)
        return self.attend(out, camera, ego, self.route_s)

    def attend(self, out: PerceptionOutput, camera, ego, route_s: float) -> PerceptionOutput:
        """`out` with the attention map of `camera` (a CameraFrame at the pose `ego`) for the route's goal
        from route_s [m], and the objects' relevances."""
        t0 = time.perf_counter()
        image = pad_image(np.asarray(camera.image))
        goal = torch.from_numpy(goal_encoding(self.route, self.road, ego, route_s)[None])
        with torch.no_grad():
            attention = self.model(detector_features(self.detector.model, image[None]), goal)[0].numpy()
        size = (image.shape[1], image.shape[0])  # [px] the grid spans the padded image
        objects = []
        for obj in out.objects:
            box = object_box(obj, ego, camera)
            rel = 1.0 if box is None else float(relevance(attention, box[None], size)[0])
            objects.append(replace(obj, relevance=rel))
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return replace(out, objects=tuple(objects), attention=attention)
