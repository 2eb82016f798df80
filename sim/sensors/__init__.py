"""Camera and lidar sensors rendered from a 3D scene of the world, with ground truth.

    rig = SensorRig(world, SensorConfig())        # builds the static scene once
    cam, lidar, state = rig.capture(world, state)  # per frame, with the sensors' faults

See docs/sensors.md for the model, the labels and the dataset format.
"""
from sim.sensors.config import CameraConfig, FaultWindow, LidarConfig, Mount, SensorConfig
from sim.sensors.faults import FaultState, RigFaultState, apply_camera_faults, apply_lidar_faults
from sim.sensors.frames import (SEMANTIC_CLASSES, SEMANTIC_ID, CameraFrame, CameraLabels, LaneLine, LidarFrame,
                                LightLabel, ObjectLabels)
from sim.sensors.rig import SensorRig, Snapshot

__all__ = [
    "CameraConfig", "CameraFrame", "CameraLabels", "FaultState", "FaultWindow", "LaneLine", "LidarConfig",
    "LidarFrame", "LightLabel", "Mount", "ObjectLabels", "RigFaultState", "SEMANTIC_CLASSES", "SEMANTIC_ID",
    "SensorConfig", "SensorRig", "Snapshot", "apply_camera_faults", "apply_lidar_faults",
]
