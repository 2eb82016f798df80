"""CNN object detector for the camera: a CenterNet-style head on a small CNN.

The network sees the whole frame (320 x 160 by default) and predicts, on a grid
of stride 4, a heatmap per class (object centres as Gaussian peaks), the box
size (log width and height in pixels), the sub-cell offset of the centre and
the log distance from the camera to the object. Decoding keeps local maxima of
the heatmap (3 x 3 max pool), reads the box at each peak and removes
duplicates with `torchvision.ops.batched_nms`.

Classes: the actor classes car, truck, pedestrian, cyclist, and traffic-light
heads by state (light_red, light_yellow, light_green).

Distance comes from the regression head. It is learned with the simulator's
camera; for a camera with another focal length the apparent size of an object
scales with fx, so `Detector.detect` scales the regressed distance by
fx / fx of training (`DetectorConfig.train_fx`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from perception.training import load_weights_file, save_weights_file

CLASSES = ("car", "truck", "pedestrian", "cyclist", "light_red", "light_yellow", "light_green")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
LIGHT_CLASSES = ("light_red", "light_yellow", "light_green")
STRIDE = 4  # [px] of the input per cell of the output grid
# per-channel mean and std of the simulator's images (0..1 scale), close enough for any RGB input
PIXEL_MEAN = (0.45, 0.47, 0.48)
PIXEL_STD = (0.22, 0.22, 0.24)


@dataclass(frozen=True)
class Detection2D:
    """One detected object in the image."""

    box: tuple[float, float, float, float]  # [px] x0, y0, x1, y1
    cls: str  # one of CLASSES
    score: float  # 0..1
    distance: float  # [m] camera to the object (estimated)


@dataclass(frozen=True)
class DetectorConfig:
    """Network size and decoding settings; saved with the weights."""

    width: int = 24  # channels of the first stage; the stages use 1, 2, 4, 8 times this
    head_channels: int = 64
    train_fx: float = 190.6805748150736  # [px] focal length of the training camera (80 deg over 320 px)
    score_threshold: float = 0.25  # detections below this score are dropped by Detector.detect
    nms_iou: float = 0.6
    max_detections: int = 100

    def __post_init__(self):
        if self.width < 1 or self.head_channels < 1:
            raise ValueError(f"DetectorConfig: width and head_channels must be >= 1, got {self.width}, "
                             f"{self.head_channels}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"DetectorConfig.score_threshold: expected 0..1, got {self.score_threshold}")


# ----------------------------------------------------------------------------- the network


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Stage(nn.Module):
    """A stride-2 convolution followed by a residual pair of 3 x 3 convolutions."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = _conv(cin, cout, 2)
        self.body = nn.Sequential(_conv(cout, cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.relu(x + self.body(x))


class CenterNet(nn.Module):
    """Backbone of four stages (strides 2, 4, 8, 16), a top-down path back to stride 4,
    and one shared head. Output (B, C + 5, H/4, W/4): class logits, log w, log h [px],
    centre offset dx, dy [cells], log distance [m]."""

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        super().__init__()
        w = config.width
        self.config = config
        self.stage1 = _Stage(3, w)
        self.stage2 = _Stage(w, 2 * w)
        self.stage3 = _Stage(2 * w, 4 * w)
        self.stage4 = _Stage(4 * w, 8 * w)
        c = config.head_channels
        self.lateral = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in (2 * w, 4 * w, 8 * w)])
        self.smooth = _conv(c, c)
        self.head = nn.Sequential(_conv(c, c), nn.Conv2d(c, len(CLASSES) + 5, 1))
        with torch.no_grad():  # start with a low heatmap everywhere (CenterNet's prior of 0.1 %)
            self.head[-1].bias[: len(CLASSES)].fill_(-6.9)
            self.head[-1].bias[len(CLASSES):].zero_()
            self.head[-1].bias[len(CLASSES) + 4] = 3.0  # log distance of about 20 m
            self.head[-1].bias[len(CLASSES):len(CLASSES) + 2] = 2.5  # boxes of about 12 px

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) normalised with PIXEL_MEAN and PIXEL_STD; H and W multiples of 16."""
        return self.head(self.features(image))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, head_channels, H / 4, W / 4) the top-down feature map the head reads (the attention module's input)."""
        c2 = self.stage2(self.stage1(image))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        p = self.lateral[2](c4)
        p = self.lateral[1](c3) + F.interpolate(p, size=c3.shape[-2:], mode="nearest")
        p = self.lateral[0](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        return self.smooth(p)


def normalise(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 to the network's (B, 3, H, W) float input."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # a writable copy
    x = x.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections of one image, as arrays (the evaluation works on these)."""

    boxes: np.ndarray  # (N, 4) [px] x0, y0, x1, y1
    cls: np.ndarray  # (N,) int index into CLASSES
    score: np.ndarray  # (N,)
    distance: np.ndarray  # (N,) [m]

    def __post_init__(self):
        for name in ("boxes", "cls", "score", "distance"):
            a = np.array(getattr(self, name))
            a.setflags(write=False)
            object.__setattr__(self, name, a)


def decode(output: torch.Tensor, config: DetectorConfig, score_threshold: float) -> list[RawDetections]:
    """Network output (B, C + 5, h, w) to detections per image: heatmap peaks, their boxes,
    then class-wise non-maximum suppression."""
    n_cls = len(CLASSES)
    heat = torch.sigmoid(output[:, :n_cls])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    b, _, h, w = heat.shape
    k = min(config.max_detections, n_cls * h * w)
    scores, index = peaks.reshape(b, -1).topk(k)
    result = []
    for i in range(b):
        keep = scores[i] >= score_threshold
        idx, sc = index[i][keep], scores[i][keep]
        cls = idx // (h * w)
        cell = idx % (h * w)
        gy, gx = cell // w, cell % w
        reg = output[i, n_cls:, gy, gx]  # (5, K)
        cx = (gx.float() + 0.5 + reg[2]) * STRIDE
        cy = (gy.float() + 0.5 + reg[3]) * STRIDE
        bw, bh = reg[0].clamp(max=8.0).exp(), reg[1].clamp(max=8.0).exp()
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
        keep = batched_nms(boxes, sc, cls, config.nms_iou)
        result.append(RawDetections(boxes[keep].numpy(), cls[keep].numpy(), sc[keep].numpy(),
                                    reg[4, keep].clamp(-3.0, 6.0).exp().numpy()))
    return result


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 BF16 or AMX); elsewhere
    autocast to bfloat16 is emulated and slower than float32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def run_model(model: CenterNet, images: np.ndarray, score_threshold: float, bf16: bool = False
              ) -> list[RawDetections]:
    """Detections for a batch of (B, H, W, 3) uint8 images (H, W multiples of 16). With `bf16`
    the network runs under bfloat16 autocast (decoding in float32)."""
    model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = model(normalise(images))
        return decode(output.float(), model.config, score_threshold)


# ----------------------------------------------------------------------------- the interface


class Detector:
    """Camera frame in, 2D detections out. `bf16`: run the network under bfloat16 autocast
    (about 40 % faster on a CPU with native bfloat16); None picks it where `bf16_supported`."""

    def __init__(self, model: CenterNet, bf16: bool | None = None):
        self.model = model.eval()
        self.config = model.config
        self.bf16 = bf16_supported() if bf16 is None else bool(bf16)

    @classmethod
    def shipped(cls) -> "Detector":
        """The detector whose weights ship with the package (perception/weights/detector.pt)."""
        return cls.load(Path(__file__).parent / "weights" / "detector.pt")

    @classmethod
    def load(cls, path: str | Path, bf16: bool | None = None) -> "Detector":
        """A detector from a file written by `save` (or a training checkpoint)."""
        config, weights = load_weights_file(path, "detector")
        model = CenterNet(DetectorConfig(**config))
        model.load_state_dict(weights)
        return cls(model, bf16)

    def save(self, path: str | Path) -> None:
        """Weights in half precision and the config (a few MB)."""
        save_weights_file(path, self.model, asdict(self.config))

    def detect(self, image: np.ndarray, K: np.ndarray, T_ego_cam: np.ndarray) -> list[Detection2D]:
        """Detections in `image` (H, W, 3) uint8 taken with intrinsics K (3, 3); T_ego_cam (4, 4)
        is checked but not needed: distances are from the camera."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if np.shape(K) != (3, 3) or np.shape(T_ego_cam) != (4, 4):
            raise ValueError(f"K must be (3, 3) and T_ego_cam (4, 4), got {np.shape(K)} and {np.shape(T_ego_cam)}")
        h, w = image.shape[:2]
        ph, pw = -h % 16, -w % 16  # pad to a multiple of the backbone's stride
        padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else image
        raw = run_model(self.model, padded[None], self.config.score_threshold, self.bf16)[0]
        scale = float(K[0][0]) / self.config.train_fx
        boxes = raw.boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0.0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0.0, h)
        return [Detection2D(tuple(float(v) for v in boxes[i]), CLASSES[int(raw.cls[i])], float(raw.score[i]),
                            float(raw.distance[i]) * scale) for i in range(len(boxes))]
