"""The scenario file schema (pydantic v2). Unknown keys are errors everywhere."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoadSpec(Strict):
    preset: Literal["highway", "curved", "merge", "intersection", "urban"]
    params: dict = Field(default_factory=dict, description="preset parameters, validated by the preset")


class VehicleSpec(Strict):
    length: float = Field(4.7, gt=0.5, le=25.0, description="[m]")
    width: float = Field(1.9, gt=0.3, le=4.0, description="[m]")
    wheelbase: float = Field(2.9, gt=0.3, le=10.0, description="[m]")
    max_steer: float = Field(0.6, gt=0.0, le=1.2, description="[rad] front-wheel angle limit")
    max_steer_rate: float = Field(0.8, gt=0.0, le=5.0, description="[rad/s]")
    max_accel: float = Field(3.0, gt=0.0, le=10.0, description="[m/s^2]")
    max_decel: float = Field(8.0, gt=0.0, le=15.0, description="[m/s^2]")

    @model_validator(mode="after")
    def _wheelbase_fits(self):
        if self.wheelbase >= self.length:
            raise ValueError(f"wheelbase {self.wheelbase} m must be shorter than length {self.length} m")
        return self


class GoalSpec(Strict):
    lane: str
    s: float = Field(ge=0.0, description="[m] along the goal lane")


class EgoSpec(Strict):
    lane: str
    s: float = Field(0.0, ge=0.0, description="[m] along the start lane")
    d: float = Field(0.0, ge=-3.0, le=3.0, description="[m] lateral offset, positive left")
    speed: float = Field(0.0, ge=0.0, le=60.0, description="[m/s]")
    route: list[str] | None = Field(None, description="lane names to drive; computed from the goal when absent")
    goal: GoalSpec
    vehicle: VehicleSpec = VehicleSpec()


class IDMSpec(Strict):
    v0: float | None = Field(None, ge=0.0, le=60.0, description="[m/s] desired speed; lane speed limit x speed_factor when absent")
    speed_factor: float = Field(1.0, gt=0.0, le=1.5)
    T: float = Field(1.5, gt=0.0, le=5.0, description="[s] desired time gap")
    a: float = Field(1.5, gt=0.0, le=5.0, description="[m/s^2] maximum acceleration")
    b: float = Field(2.0, gt=0.0, le=9.0, description="[m/s^2] comfortable deceleration")
    s0: float = Field(2.5, ge=0.0, le=20.0, description="[m] jam distance")
    delta: float = Field(4.0, gt=0.0, le=10.0)


class MobilSpec(Strict):
    enabled: bool = True
    politeness: float = Field(0.3, ge=0.0, le=2.0)
    threshold: float = Field(0.2, ge=0.0, le=5.0, description="[m/s^2] acceleration gain needed")
    b_safe: float = Field(4.0, gt=0.0, le=9.0, description="[m/s^2] largest deceleration imposed on the new follower")


class TimeTrigger(Strict):
    time: float = Field(ge=0.0, description="[s] fire at this time")


class DistanceTrigger(Strict):
    ego_distance: float = Field(gt=0.0, description="[m] fire when the ego is closer than this (centre to centre)")


class TimeGapTrigger(Strict):
    ego_time_gap: float = Field(gt=0.0, description="[s] fire when the along-road gap to the ego divided by the ego's speed is below this")


Trigger = Union[TimeTrigger, DistanceTrigger, TimeGapTrigger]


class CutIn(Strict):
    kind: Literal["cut_in"]
    target_lane: str
    duration: float = Field(2.5, gt=0.5, le=10.0, description="[s] lateral manoeuvre time")


class Brake(Strict):
    kind: Literal["brake"]
    decel: float = Field(6.0, gt=0.0, le=10.0, description="[m/s^2]")
    until_speed: float = Field(0.0, ge=0.0, description="[m/s] then hold this speed")


class SetSpeed(Strict):
    kind: Literal["set_speed"]
    speed: float = Field(ge=0.0, le=60.0)
    accel: float = Field(2.0, gt=0.0, le=10.0, description="[m/s^2] magnitude used to reach the speed")


class Go(Strict):
    kind: Literal["go"]  # start moving along the path / resume the behaviour


Action = Annotated[Union[CutIn, Brake, SetSpeed, Go], Field(discriminator="kind")]


class EventSpec(Strict):
    trigger: Trigger
    action: Action


class ActorSpec(Strict):
    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["car", "van", "truck", "pedestrian", "cyclist", "static"] = "car"
    lane: str | None = Field(None, description="start lane (idm and static actors)")
    s: float = Field(0.0, description="[m] along the start lane, or along the path")
    d: float = Field(0.0, ge=-4.0, le=4.0, description="[m] lateral offset from the lane centre")
    speed: float = Field(0.0, ge=0.0, le=60.0, description="[m/s] initial speed")
    length: float | None = Field(None, gt=0.2, le=25.0)
    width: float | None = Field(None, gt=0.2, le=4.0)
    behaviour: Literal["idm", "path", "static"] = Field(
        "idm", description="default: 'static' for type static, 'path' when a path is given, else 'idm'")
    idm: IDMSpec = IDMSpec()
    mobil: MobilSpec = MobilSpec(enabled=False)
    route: list[str] | None = Field(None, description="lane names an idm actor takes at forks")
    path: list[tuple[float, float]] | None = Field(None, description="[m] world points a path actor follows")
    path_speed: float = Field(1.4, ge=0.0, le=40.0, description="[m/s] path actor cruise speed")
    start_moving: bool = Field(True, description="path actors: False waits for a 'go' event")
    events: list[EventSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _default_behaviour(cls, data):
        if isinstance(data, dict) and "behaviour" not in data:
            if data.get("type") == "static":
                data = {**data, "behaviour": "static"}
            elif data.get("path") is not None:
                data = {**data, "behaviour": "path"}
        return data

    @model_validator(mode="after")
    def _placement(self):
        if self.type == "static" and self.behaviour != "static":
            raise ValueError("a 'static' actor must have behaviour 'static'")
        if self.behaviour == "path":
            if not self.path or len(self.path) < 2:
                raise ValueError("a 'path' actor needs 'path' with at least 2 points")
        elif self.lane is None:
            raise ValueError(f"a '{self.behaviour}' actor needs 'lane'")
        return self


class TrafficSpec(Strict):
    count: int = Field(0, ge=0, le=300)
    lanes: list[str] | None = Field(None, description="lanes to populate; all driving lanes when absent")
    s_range: tuple[float, float] = Field((0.0, 1000.0), description="[m] along each lane")
    speed_range: tuple[float, float] = Field((20.0, 30.0), description="[m/s] initial and desired speeds")
    min_gap: float = Field(12.0, gt=2.0, description="[m] bumper to bumper at spawn")
    truck_fraction: float = Field(0.1, ge=0.0, le=1.0)
    politeness: float = Field(0.3, ge=0.0, le=2.0)
    keep_clear_of_ego: float = Field(30.0, ge=0.0, description="[m] no spawn this close to the ego start")

    @field_validator("s_range", "speed_range")
    @classmethod
    def _ordered(cls, v):
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high], got {list(v)}")
        return v


class LightSpec(Strict):
    name: str
    green: float | None = Field(None, gt=0.0, le=300.0, description="[s]")
    yellow: float | None = Field(None, ge=0.0, le=10.0, description="[s]")
    red: float | None = Field(None, gt=0.0, le=300.0, description="[s]")
    offset: float | None = Field(None, description="[s] phase shift")


class NoiseSpec(Strict):
    position: float = Field(0.0, ge=0.0, le=5.0, description="[m] std of oracle position noise")
    velocity: float = Field(0.0, ge=0.0, le=5.0, description="[m/s] std of oracle velocity noise")
    range: float = Field(120.0, gt=0.0, le=500.0, description="[m] oracle detection range")


class MountSpec(Strict):
    x: float = Field(description="[m] forward of the rear axle")
    y: float = Field(0.0, description="[m] left")
    z: float = Field(description="[m] above the ground")
    roll_deg: float = 0.0
    pitch_deg: float = Field(0.0, description="[deg] positive looks down")
    yaw_deg: float = Field(0.0, description="[deg] positive looks left")


class WindowSpec(Strict):
    start: float = Field(ge=0.0, description="[s]")
    end: float = Field(description="[s] the fault lasts from start to end")

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError(f"end {self.end} s must come after start {self.start} s")
        return self


class FaultSpec(WindowSpec):
    kind: Literal["dropout", "freeze", "black", "exposure"]
    gain: float = Field(1.0, ge=0.0, description="exposure multiplier while active (kind exposure)")


class LidarFaultSpec(WindowSpec):
    kind: Literal["dropout", "freeze", "black"] = Field(
        description="dropout: no sweep; freeze: the last sweep repeats; black: a sweep with no returns (a lidar "
                    "has no exposure)")


class CameraSpec(Strict):
    width: int = Field(320, ge=16, le=4096, description="[px]")
    height: int = Field(160, ge=16, le=4096, description="[px]")
    hfov_deg: float = Field(80.0, ge=10.0, le=150.0, description="[deg] horizontal field of view")
    mount: MountSpec | None = Field(None, description="default: behind the windscreen, 1.45 m up")
    pixel_noise: float = Field(0.0, ge=0.0, le=64.0, description="std of additive noise [0-255 units]")
    exposure: float = Field(1.0, gt=0.0, le=10.0)
    dropout: float = Field(0.0, ge=0.0, le=1.0, description="probability a frame is not delivered")
    latency: float = Field(0.0, ge=0.0, le=2.0, description="[s] delivery delay")
    faults: list[FaultSpec] = Field(default_factory=list, description="frozen, black or dark frames, dropouts")


class LidarSpec(Strict):
    beams: int = Field(32, ge=1, le=256)
    azimuth_steps: int = Field(1024, ge=8, le=8192)
    fov_up_deg: float = Field(10.0, ge=-89.0, le=89.0)
    fov_down_deg: float = Field(-30.0, ge=-89.0, le=89.0)
    max_range: float = Field(100.0, gt=1.0, le=500.0, description="[m]")
    range_noise: float = Field(0.02, ge=0.0, le=1.0, description="[m] std")
    dropout: float = Field(0.0, ge=0.0, le=1.0, description="probability a return is lost")
    mount: MountSpec | None = Field(None, description="default: roof centre, 1.9 m up")
    latency: float = Field(0.0, ge=0.0, le=2.0, description="[s] delivery delay")
    faults: list[LidarFaultSpec] = Field(default_factory=list, description="frozen or empty sweeps, dropouts")

    @model_validator(mode="after")
    def _fov(self):
        if self.fov_down_deg >= self.fov_up_deg:
            raise ValueError(f"fov_down_deg {self.fov_down_deg} must be below fov_up_deg {self.fov_up_deg}")
        return self


class SensorsSpec(Strict):
    camera: CameraSpec | None = CameraSpec()
    lidar: LidarSpec | None = LidarSpec()
    lighting: Literal["day", "dusk", "overcast"] = "day"
    sun_azimuth_deg: float = Field(35.0, ge=-360.0, le=360.0)


class CriteriaSpec(Strict):
    min_score: float = Field(0.0, ge=0.0, le=100.0)
    reach_goal: bool = False
    no_collision: bool = True


class SweepSpec(Strict):
    parameters: dict[str, list] = Field(description="dotted path -> values; the cartesian product becomes variants")

    @field_validator("parameters")
    @classmethod
    def _non_empty(cls, v):
        for key, values in v.items():
            if not values:
                raise ValueError(f"sweep parameter '{key}' has no values")
        return v


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-\[\]=.,]+$")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    duration: float = Field(30.0, gt=0.0, le=600.0, description="[s]")
    dt: float = Field(0.05, gt=0.0, le=0.2, description="[s] physics step")
    stack_rate: float = Field(10.0, gt=0.0, le=50.0, description="[Hz]")
    seed: int = Field(0, ge=0)
    road: RoadSpec
    ego: EgoSpec
    actors: list[ActorSpec] = Field(default_factory=list)
    traffic: TrafficSpec = TrafficSpec()
    lights: list[LightSpec] = Field(default_factory=list)
    perception_noise: NoiseSpec = NoiseSpec()
    sensors: SensorsSpec = SensorsSpec()
    criteria: CriteriaSpec = CriteriaSpec()
    sweep: SweepSpec | None = None

    @model_validator(mode="after")
    def _unique_ids(self):
        seen = set()
        for a in self.actors:
            if a.id in seen:
                raise ValueError(f"actor id '{a.id}' is used twice")
            seen.add(a.id)
        return self
