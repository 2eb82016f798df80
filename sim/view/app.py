"""What the live view and the replay share: the window, the frame loop, pan and zoom, layers, help, screenshots.

A subclass supplies `update()` (advance its clock: the simulation or the
replay position) and `tick()` (gather a FrameData); `frame()` runs one
iteration: events, update, tick, render. Time comes from an injectable clock
so tests can drive it.
"""
from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Callable

import pygame

from sim.view.draw import HelpLines, Renderer
from sim.view.frame import LAYERS, ActorLayer, FrameData, ViewState, actor_at
from sim.view.layout import Layout, Viewport, zoom_about

RATES = {pygame.K_1: 0.5, pygame.K_2: 1.0, pygame.K_3: 2.0, pygame.K_4: math.inf}  # simulated s per wall s
LAYER_KEYS = {getattr(pygame, f"K_F{k + 1}"): name for k, name in enumerate(LAYERS)}
CLICK_SLOP = 4  # [px] a press and release closer than this is a click, not a drag
ZOOM_STEP = 1.15  # per wheel notch
DEFAULT_SCALE = 6.0  # [px/m]
STATUS_SECONDS = 3.0  # [s] wall time a status line stays up
FPS_WINDOW = 1.0  # [s] wall time the frame rate is averaged over
FOLLOW_AHEAD = 0.18  # fraction of the view height the camera looks ahead of the ego

COMMON_HELP: HelpLines = (
    ("1 2 3 4", "speed x0.5 / x1 / x2 / as fast as possible"),
    ("f", "follow the ego again after panning"),
    ("+ -", "zoom"),
    ("p", "screenshot (PNG)"),
    ("h", "this help"),
    ("Esc q", "quit"),
    ("mouse drag", "pan"),
    ("mouse wheel", "zoom"),
    ("click", "select an actor: state and prediction"),
)


def rate_label(rate: float) -> str:
    return "max" if math.isinf(rate) else f"x{rate:g}"


class ViewApp:
    def __init__(self, road, size: tuple[int, int], window: bool, title: str, help_lines: HelpLines,
                 slider: bool = False, clock: Callable[[], float] = time.perf_counter,
                 screenshot_dir: str | Path = "screenshots"):
        if window:
            if not pygame.display.get_init():
                pygame.display.init()
            self.surface = pygame.display.set_mode(size)
            pygame.display.set_caption(f"drivestack: {title}")
        else:
            self.surface = pygame.Surface(size)
        self.window = window
        self.renderer = Renderer(road, help_lines + COMMON_HELP)
        self.layout = Layout.for_size(*size, slider=slider)
        self.clock = clock
        self.screenshot_dir = Path(screenshot_dir)
        self.scale = DEFAULT_SCALE
        self.center = (0.0, 0.0)  # [m] used when not following the ego
        self.follow = True
        self.layers = set(LAYERS)
        self.show_help = False
        self.selected = -1  # actor id
        self.rate = 1.0  # simulated seconds per wall-clock second, inf: as fast as possible
        self.paused = False
        self.running = True
        self._status, self._status_until = "", -math.inf
        self._press: tuple[int, int] | None = None  # where the left button went down
        self._dragged = False
        self._frames: deque[float] = deque()  # wall times of recent rendered frames
        self._actors: ActorLayer | None = None  # actors of the latest frame, for clicks
        self._shots = 0  # screenshots taken

    # ---- to be supplied by the subclass -------------------------------------------------------

    def update(self) -> None:
        raise NotImplementedError

    def tick(self) -> FrameData:
        raise NotImplementedError

    def handle_key(self, event) -> bool:
        """Subclass keys; True when the key was used."""
        return False

    def handle_mouse(self, event) -> bool:
        """Subclass mouse use (the replay's slider); True when the event was used."""
        return False

    # ---- the loop -------------------------------------------------------------------------------

    def frame(self) -> FrameData:
        """One iteration: events, update, gather, draw. Returns what was drawn."""
        self.process_events()
        self.update()
        return self.draw()

    def draw(self) -> FrameData:
        """Gather a frame and draw it."""
        return self.present(self.tick())

    def present(self, data: FrameData) -> FrameData:
        """Draw a gathered frame (and show it, in a window)."""
        self._actors = data.actors
        self.layout = self.renderer.render(self.surface, data)
        if self.window:
            pygame.display.flip()
        now = self.clock()
        self._frames.append(now)
        while self._frames and self._frames[0] < now - FPS_WINDOW:
            self._frames.popleft()
        return data

    def run(self, max_fps: float | None = 60.0, max_frames: int | None = None) -> int:
        frames = 0
        while self.running and (max_frames is None or frames < max_frames):
            start = self.clock()
            self.frame()
            frames += 1
            if max_fps:
                time.sleep(max(0.0, 1.0 / max_fps - (self.clock() - start)))
        return 0

    @property
    def fps(self) -> float:
        if len(self._frames) < 2:
            return 0.0
        span = self._frames[-1] - self._frames[0]
        return (len(self._frames) - 1) / span if span > 0 else 0.0

    # ---- events ---------------------------------------------------------------------------------

    def process_events(self) -> None:
        for event in pygame.event.get():
            self.handle(event)

    def handle(self, event) -> None:
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            if not self.handle_key(event):
                self._common_key(event)
        elif event.type in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP, pygame.MOUSEMOTION, pygame.MOUSEWHEEL):
            if not self.handle_mouse(event):
                self._common_mouse(event)
        else:
            self.handle_other(event)

    def handle_other(self, event) -> None:
        """Events other than keys down and the mouse (key releases)."""

    def _common_key(self, event) -> None:
        key = event.key
        if key in (pygame.K_ESCAPE, pygame.K_q):
            self.running = False
        elif key in RATES:
            self.rate = RATES[key]
            self.say(f"speed {rate_label(self.rate)}")
        elif key in LAYER_KEYS:
            name = LAYER_KEYS[key]
            self.layers ^= {name}
            self.say(f"{name} {'on' if name in self.layers else 'off'}")
        elif key == pygame.K_h:
            self.show_help = not self.show_help
        elif key == pygame.K_p:
            self.say(f"saved {self.screenshot()}")
        elif key == pygame.K_f:
            self.follow = True
        elif key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS, pygame.K_MINUS, pygame.K_KP_MINUS):
            factor = 1 / ZOOM_STEP if key in (pygame.K_MINUS, pygame.K_KP_MINUS) else ZOOM_STEP
            self.center, self.scale = zoom_about(self.view_center(), self.scale, self.view_center(), factor)

    def _common_mouse(self, event) -> None:
        vp = Viewport(self.layout.view, self.view_center(), self.scale)
        if event.type == pygame.MOUSEWHEEL:
            # following the ego, zoom about the view's centre; otherwise about the point under the mouse
            mouse = pygame.mouse.get_pos()
            inside = self.layout.view.contains(*mouse) and not self.follow
            anchor = vp.to_world(*mouse) if inside else vp.center
            self.center, self.scale = zoom_about(vp.center, self.scale, anchor, ZOOM_STEP ** event.y)
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1 and self.layout.view.contains(*event.pos):
            self._press, self._dragged = event.pos, False
        elif event.type == pygame.MOUSEMOTION and self._press is not None:
            if self._dragged or max(abs(event.pos[0] - self._press[0]), abs(event.pos[1] - self._press[1])) > CLICK_SLOP:
                if not self._dragged:
                    self.center, self.follow, self._dragged = vp.center, False, True
                dx, dy = event.rel
                self.center = (self.center[0] - dx / self.scale, self.center[1] + dy / self.scale)
        elif event.type == pygame.MOUSEBUTTONUP and event.button == 1 and self._press is not None:
            if not self._dragged and self._actors is not None:
                self.selected = actor_at(self._actors, vp.to_world(*event.pos))
            self._press = None

    # ---- helpers ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self._status, self._status_until = text, self.clock() + STATUS_SECONDS

    @property
    def status(self) -> str:
        return self._status if self.clock() < self._status_until else ""

    def ego_center(self) -> tuple[float, float]:
        """[m] where the camera looks when following the ego."""
        raise NotImplementedError

    def view_center(self) -> tuple[float, float]:
        return self.ego_center() if self.follow else self.center

    def view_state(self) -> ViewState:
        return ViewState(center=self.view_center(), scale=self.scale, layers=frozenset(self.layers),
                         selected=self.selected, show_help=self.show_help)

    def look_ahead(self, box) -> tuple[float, float]:
        """A camera centre ahead of a box (cx, cy, yaw, ...) so more of the road ahead shows."""
        ahead = FOLLOW_AHEAD * self.layout.view.h / self.scale
        return float(box[0] + ahead * math.cos(box[2])), float(box[1] + ahead * math.sin(box[2]))

    def screenshot(self, path: str | Path | None = None) -> Path:
        """Save the latest drawn frame as PNG (under screenshot_dir unless a path is given)."""
        if path is None:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            self._shots += 1
            path = self.screenshot_dir / f"drivestack_{time.strftime('%Y%m%d_%H%M%S')}_{self._shots:03d}.png"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.surface, str(path))
        return path
