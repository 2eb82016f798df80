"""Multi-object tracking: an IMM of two constant-velocity Kalman filters per track, Hungarian association.

`Tracker.update(detections, t, ego=...)` reads like the textbook loop:
`to_world` -> `predict` every track -> `associate` (gated Mahalanobis cost,
scipy's linear_sum_assignment) -> `rescue` confirmed tracks left outside every
gate (nearest leftover detection within a few metres, more for a box that grew, whose track is first
moved by `regrown_centre`) -> `correct` matched tracks -> `spawn` tracks for
unmatched detections -> `prune` tracks missed too often -> report confirmed
tracks as sim.types.TrackedObject (a track the lidar never saw near the ego, or a
lidar-only one beside the road that stands still, is not confirmed). Track state
is x, y, vx, vy in the world frame.

Each track runs an interacting multiple model filter (IMM, Blom and Bar-Shalom
1988; Bar-Shalom, Li and Kirubarajan, "Estimation with Applications to Tracking
and Navigation", ch. 11.6): a quiet constant-velocity model (accel_noise) for
steady driving and a manoeuvring one (maneuver_noise) for hard braking,
swerves and a pedestrian starting to walk, mixed every update by how well each
explains the detections. One quiet model alone smooths velocity well but lags
a car braking at 9 m/s^2 by about a second; one noisy model follows it but
jitters in steady driving.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from sim.types import EgoState, TrackedObject

CHI2_GATE_2DOF_99 = 9.21  # squared Mahalanobis distance below which 99% of true 2D matches fall


@dataclass(frozen=True)
class Detection:
    x: float  # [m] box centre, ego frame (or world frame when update() gets no ego)
    y: float  # [m]
    yaw: float  # [rad]
    length: float  # [m]
    width: float  # [m]
    cls: int  # index into sim.types.CLASS_NAMES
    score: float  # [0, 1]
    sigma: float = float("nan")  # [m] std of the centre; nan: the tracker's TrackerConfig.meas_noise
    # a track made of such detections only is reported once it moves (TrackerConfig.motion_to_confirm):
    # a lidar-only person beside the road could as well be a tree trunk or a post
    moving_only: bool = False
    # placed by the camera alone, no lidar object behind it: a track made of such detections only is not
    # reported near the ego (TrackerConfig.camera_only_range), where the lidar would have found the object
    camera_only: bool = False


@dataclass(frozen=True)
class TrackerConfig:
    accel_noise: float = 2.0  # [m/s^2] std of the white acceleration driving the quiet constant-velocity model
    maneuver_noise: float = 8.0  # [m/s^2] ... driving the manoeuvring one (a car braking as hard as it can)
    switch_prob: float = 0.05  # probability per update that a track switches between the two models
    meas_noise: float = 0.3  # [m] std of a detection's centre
    init_speed_std: float = 10.0  # [m/s] std of a new track's velocity
    gate: float = CHI2_GATE_2DOF_99  # squared Mahalanobis distance; farther pairs never match
    hits_to_confirm: int = 3  # M: a track is reported after this many matched detections
    misses_to_delete: int = 3  # K: a track is deleted after this many updates in a row without a match
    size_smoothing: float = 0.3  # weight of a new detection's length and width in the track's running size
    heading_speed: float = 2.0  # [m/s] above this a track's heading is its velocity's; below, its detections'
    rescue_reach: float = 3.0  # [m] a confirmed track outside every gate takes a leftover detection this near,
    rescue_reach_per_m: float = 0.08  # ... or this share of its range from the ego, if more (far boxes jump more)
    confirm_speed_std: float = 2.5  # [m/s] a track is reported only once its velocity's std is below this
    motion_to_confirm: float = 0.6  # [m/s] speed a track of `moving_only` detections must show to be reported
    # [m] from the ego: a track of `camera_only` detections this near is not reported. The lidar objects reach
    # 60 m (LidarObjectConfig.max_range) and find nearly every car and person the camera sees well within that;
    # a camera box there that no lidar object confirms, cycle after cycle, was a guard rail or a tree trunk in
    # the held-out runs (258 reported track-cycles within 50 m, 2 of them on an actor). Farther out the camera
    # alone may report a car, and that track stays reported as it comes nearer
    camera_only_range: float = 50.0

    def __post_init__(self):
        for name in ("accel_noise", "maneuver_noise", "meas_noise", "init_speed_std", "gate", "rescue_reach",
                     "rescue_reach_per_m",
                     "confirm_speed_std", "motion_to_confirm", "camera_only_range"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TrackerConfig.{name}: expected a finite number > 0, got {value!r}")
        for name in ("hits_to_confirm", "misses_to_delete"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"TrackerConfig.{name}: expected an int >= 1, got {value!r}")
        if not 0.0 <= self.switch_prob <= 0.5:
            raise ValueError(f"TrackerConfig.switch_prob: expected a number in [0, 0.5], got {self.switch_prob!r}")
        if not 0.0 < self.size_smoothing <= 1.0:
            raise ValueError(f"TrackerConfig.size_smoothing: expected a number in (0, 1], got {self.size_smoothing!r}")


@dataclass
class Track:
    id: int
    mean: np.ndarray  # (4,) x, y [m], vx, vy [m/s], world frame: the models' combined estimate
    cov: np.ndarray  # (4, 4)
    models: np.ndarray  # (2, 4) each model's estimate (quiet, manoeuvring)
    model_covs: np.ndarray  # (2, 4, 4)
    model_prob: np.ndarray  # (2,) how likely each model is
    det: Detection  # the last matched detection, in the world frame
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    size: tuple[float, float] = (0.0, 0.0)  # [m] running length and width
    votes: dict = field(default_factory=dict)  # class -> summed detection scores; the track's class is the top one
    moving_only: bool = False  # every detection so far was moving_only: reported once it moves
    camera_only: bool = False  # every detection so far was camera_only and within camera_only_range of the ego

    def combine(self) -> None:
        """The combined estimate from the models' (IMM output)."""
        self.mean, self.cov = combined(self.models, self.model_covs, self.model_prob)

    def move(self, xy: np.ndarray) -> None:
        """Place the track's centre at xy, every model with it."""
        self.models[:, :2] += np.asarray(xy) - self.mean[:2]
        self.mean[:2] = xy

    def absorb(self, d: Detection, smoothing: float) -> None:
        """Fold a matched detection's class and size into the track's."""
        self.det = d
        self.moving_only = self.moving_only and d.moving_only
        self.camera_only = self.camera_only and d.camera_only
        self.votes[d.cls] = self.votes.get(d.cls, 0.0) + d.score
        a = smoothing
        self.size = ((1.0 - a) * self.size[0] + a * d.length, (1.0 - a) * self.size[1] + a * d.width)


H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # measures x, y


def to_world(d: Detection, ego: EgoState | None) -> Detection:
    """A detection in the ego frame moved to the world frame by the ego pose (unchanged without one)."""
    if ego is None:
        return d
    c, s = math.cos(ego.yaw), math.sin(ego.yaw)
    return dataclasses.replace(d, x=ego.x + c * d.x - s * d.y, y=ego.y + s * d.x + c * d.y,
                               yaw=math.atan2(math.sin(d.yaw + ego.yaw), math.cos(d.yaw + ego.yaw)))


def predict(mean: np.ndarray, cov: np.ndarray, dt: float, accel_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity prediction over dt [s] with white-acceleration process noise."""
    F = np.eye(4)
    F[0, 2] = F[1, 3] = dt
    g = np.array([[0.5 * dt * dt, 0.0], [0.0, 0.5 * dt * dt], [dt, 0.0], [0.0, dt]])
    Q = accel_noise ** 2 * g @ g.T
    return F @ mean, F @ cov @ F.T + Q


def correct(mean: np.ndarray, cov: np.ndarray, z: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update with a position measurement z (2,); Joseph form keeps the covariance symmetric."""
    S = H @ cov @ H.T + R
    K = cov @ H.T @ np.linalg.inv(S)
    I_KH = np.eye(4) - K @ H
    return mean + K @ (z - H @ mean), I_KH @ cov @ I_KH.T + K @ R @ K.T


def combined(means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4,), (4, 4) the moment-matched Gaussian of a mixture: means (M, 4), covs (M, 4, 4), weights (M,)."""
    mean = weights @ means
    spread = means - mean
    return mean, np.einsum("m,mij->ij", weights, covs) + np.einsum("m,mi,mj->ij", weights, spread, spread)


def imm_predict(tr: Track, dt: float, noises: tuple[float, float], switch: float) -> None:
    """IMM mixing and prediction over dt [s]: each model starts from the mixture of both, weighted by how
    likely the track was in each and switched to this one, then predicts with its own process noise."""
    trans = np.array([[1.0 - switch, switch], [switch, 1.0 - switch]])
    prior = trans.T @ tr.model_prob  # (2,) model probabilities after switching
    mix = trans * tr.model_prob[:, None] / np.maximum(prior[None, :], 1e-300)  # (from, to)
    means, covs = np.empty_like(tr.models), np.empty_like(tr.model_covs)
    for j, noise in enumerate(noises):
        m, P = combined(tr.models, tr.model_covs, mix[:, j])
        means[j], covs[j] = predict(m, P, dt, noise)
    tr.models, tr.model_covs, tr.model_prob = means, covs, prior
    tr.combine()


def imm_correct(tr: Track, z: np.ndarray, R: np.ndarray) -> None:
    """Each model corrected with the measurement z (2,); the models re-weighted by its likelihood under each."""
    like = np.empty(2)
    for j in range(2):
        S = H @ tr.model_covs[j] @ H.T + R
        r = z - H @ tr.models[j]
        like[j] = math.exp(-0.5 * float(r @ np.linalg.solve(S, r))) / (2.0 * math.pi * math.sqrt(np.linalg.det(S)))
        tr.models[j], tr.model_covs[j] = correct(tr.models[j], tr.model_covs[j], z, R)
    weights = tr.model_prob * like
    total = weights.sum()
    if total > 0.0 and math.isfinite(total):  # a detection both models deem impossible leaves the weights
        tr.model_prob = weights / total
    tr.combine()


def measurement_noise(d: Detection, default: float) -> np.ndarray:
    """(2, 2) covariance of a detection's centre."""
    sigma = d.sigma if math.isfinite(d.sigma) else default
    return np.eye(2) * sigma ** 2


def associate(tracks: list[Track], dets: list[Detection], Rs: list[np.ndarray], gate: float
              ) -> list[tuple[int, int]]:
    """(track, detection) index pairs of the least total squared Mahalanobis distance, each under the gate;
    Rs[j] is detection j's measurement covariance."""
    if not tracks or not dets:
        return []
    z = np.array([[d.x, d.y] for d in dets])
    cost = np.empty((len(tracks), len(dets)))
    for i, tr in enumerate(tracks):
        P = H @ tr.cov @ H.T
        r = z - H @ tr.mean
        for j in range(len(dets)):
            cost[i, j] = r[j] @ np.linalg.solve(P + Rs[j], r[j])
    return _assign(cost, gate)


def _assign(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    big = gate * 1e3 + 1.0  # pairs beyond the gate stay assignable to keep the problem square, then are dropped
    rows, cols = linear_sum_assignment(np.where(cost < gate, cost, big))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < gate]


def rescue(tracks: list[Track], dets: list[Detection], reach: np.ndarray) -> list[tuple[int, int]]:
    """Second chance for confirmed tracks the gate left unmatched: the nearest leftover detection within
    reach[i] metres of track i's predicted centre, plus half the change in length (a box whose centre
    jumped: a lidar box grown the other way, as a truck seen first by its rear and then whole; a far
    object first placed by the camera and then by the lidar)."""
    if not tracks or not dets:
        return []
    d = np.hypot(np.array([[det.x for det in dets]]) - np.array([[tr.mean[0]] for tr in tracks]),
                 np.array([[det.y for det in dets]]) - np.array([[tr.mean[1]] for tr in tracks]))
    growth = 0.5 * np.abs(np.array([[det.length for det in dets]]) - np.array([[tr.size[0]] for tr in tracks]))
    return _assign(d / (np.asarray(reach)[:, None] + growth), 1.0)


def regrown_centre(tr: Track, d: Detection) -> np.ndarray:
    """Track tr's centre moved along detection d's heading by half their change in length, towards d:
    the face of the box the sensors saw first stays where it was. Correcting the track with d's centre
    then does not read the box's growth as motion."""
    heading = np.array([math.cos(d.yaw), math.sin(d.yaw)]) if math.isfinite(d.yaw) else np.zeros(2)
    along = float(heading @ (np.array([d.x, d.y]) - tr.mean[:2]))
    shift = min(abs(along), 0.5 * abs(d.length - tr.size[0]))
    return tr.mean[:2] + math.copysign(shift, along) * heading


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    t: float | None = None  # [s] time of the last update
    next_id: int = 1

    def update(self, detections: list[Detection], t: float, ego: EgoState | None = None) -> tuple[TrackedObject, ...]:
        """Fold in the detections taken at t [s] (ego frame when `ego` is given, world frame otherwise)
        and return the confirmed tracks."""
        cfg = self.config
        # a camera-only detection beyond camera_only_range may start a reported track on its own (see
        # TrackerConfig.camera_only_range); without the ego the detections' range is unknown
        dets = [to_world(d if ego is not None and math.hypot(d.x, d.y) <= cfg.camera_only_range
                         else dataclasses.replace(d, camera_only=False), ego) for d in detections]
        Rs = [measurement_noise(d, cfg.meas_noise) for d in dets]
        dt = 0.0 if self.t is None else t - self.t
        if dt < 0.0:
            raise ValueError(f"Tracker.update: time went backwards from {self.t} s to {t} s")
        self.t = t
        for tr in self.tracks:
            imm_predict(tr, dt, (cfg.accel_noise, cfg.maneuver_noise), cfg.switch_prob)
        pairs = associate(self.tracks, dets, Rs, cfg.gate)
        left_tracks = [i for i, tr in enumerate(self.tracks) if tr.confirmed and i not in {i for i, _ in pairs}]
        left_dets = [j for j in range(len(dets)) if j not in {j for _, j in pairs}]
        rescued = [(left_tracks[a], left_dets[b]) for a, b in rescue([self.tracks[i] for i in left_tracks],
                                                                      [dets[j] for j in left_dets],
                                                                      self._reach(left_tracks, ego))]
        for i, j in rescued:
            self.tracks[i].move(regrown_centre(self.tracks[i], dets[j]))
        pairs += rescued
        matched_tracks = {i for i, _ in pairs}
        matched_dets = {j for _, j in pairs}
        for i, j in pairs:
            tr, d = self.tracks[i], dets[j]
            imm_correct(tr, np.array([d.x, d.y]), Rs[j])
            tr.absorb(d, cfg.size_smoothing)
            tr.hits, tr.misses = tr.hits + 1, 0
            speed_std = math.sqrt(max(tr.cov[2, 2], tr.cov[3, 3]))
            # reported once seen often enough and its velocity is known: a fresh track's velocity starts at
            # zero, and a far car that seems to stand still is a phantom obstacle for the planner
            # a moving_only track must move, and clearly: faster than twice its speed's std as well
            moves = not tr.moving_only or math.hypot(tr.mean[2], tr.mean[3]) > max(cfg.motion_to_confirm,
                                                                                  2.0 * speed_std)
            tr.confirmed = tr.confirmed or (tr.hits >= cfg.hits_to_confirm and speed_std <= cfg.confirm_speed_std
                                            and moves and not tr.camera_only)
        for i, tr in enumerate(self.tracks):
            if i not in matched_tracks:
                tr.misses += 1
        self.tracks = [tr for tr in self.tracks if tr.misses < cfg.misses_to_delete]
        for j, d in enumerate(dets):
            if j not in matched_dets:
                self.tracks.append(self._spawn(d, Rs[j]))
        return tuple(self._report(tr) for tr in self.tracks if tr.confirmed)

    def _reach(self, rows: list[int], ego: EgoState | None) -> np.ndarray:
        cfg = self.config
        if ego is None:
            return np.full(len(rows), cfg.rescue_reach)
        rng = np.array([math.hypot(self.tracks[i].mean[0] - ego.x, self.tracks[i].mean[1] - ego.y) for i in rows])
        return np.maximum(cfg.rescue_reach, cfg.rescue_reach_per_m * rng)

    def _spawn(self, d: Detection, R: np.ndarray) -> Track:
        cov = np.zeros((4, 4))
        cov[:2, :2] = R
        cov[2, 2] = cov[3, 3] = self.config.init_speed_std ** 2
        mean = np.array([d.x, d.y, 0.0, 0.0])
        tr = Track(id=self.next_id, mean=mean, cov=cov, models=np.stack([mean, mean]), model_covs=np.stack([cov, cov]),
                   model_prob=np.array([1.0 - self.config.switch_prob, self.config.switch_prob]), det=d,
                   confirmed=self.config.hits_to_confirm <= 1 and not (d.moving_only or d.camera_only),
                   size=(d.length, d.width), votes={d.cls: d.score}, moving_only=d.moving_only,
                   camera_only=d.camera_only)
        self.next_id += 1
        return tr

    def _report(self, tr: Track) -> TrackedObject:
        x, y, vx, vy = (float(v) for v in tr.mean)
        yaw = tr.det.yaw
        if math.hypot(vx, vy) > self.config.heading_speed or not math.isfinite(yaw):
            yaw = math.atan2(vy, vx)
        cls = max(tr.votes, key=lambda c: (tr.votes[c], -c))
        return TrackedObject(id=tr.id, cls=int(cls), x=x, y=y, yaw=yaw, vx=vx, vy=vy,
                             length=tr.size[0], width=tr.size[1], covariance=tr.cov,
                             score=min(1.0, sum(tr.votes.values()) / tr.hits))
