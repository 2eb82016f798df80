"""Draw a FrameData: the top-down view, the sensor panels, the HUD and the replay slider.

`Renderer(road).render(surface, frame)` only draws: everything it shows comes
from the frame, and the renderer keeps only what never changes during a run
(the road geometry, fonts, rendered text).
"""
from __future__ import annotations

import math

import numpy as np
import pygame

from sim.types import CLASS_NAMES, PEDESTRIAN
from sim.view import style
from sim.view.frame import LAYER_TITLES, CameraOverlay, FrameData, LidarOverlay, SensorImages
from sim.view.layout import PANEL_TITLE, Layout, Rect, Viewport, box_corners
from sim.view.road_geometry import MARKING_COLOURS, MARKING_WIDTH, STOP_LINE_WIDTH, RoadGeometry

LIDAR_RANGE = 50.0  # [m] half-width of the lidar bird's-eye panel
TEXT_CACHE = 2048  # rendered strings (and translucent boxes) kept
HELP_ALPHA = 245  # the help overlay hides the map almost fully
GRID_STEP = 10.0  # [m]
SCALE_BAR_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # [m]
FONT_FAMILIES = {"sans": "dejavusans,liberationsans,arial,helvetica",
                 "mono": "dejavusansmono,liberationmono,couriernew,monospace"}

# (key, description) pairs of the help overlay, set by the app that shows it
HelpLines = tuple[tuple[str, str], ...]


class Text:
    """Fonts and a cache of rendered strings (most HUD strings repeat from frame to frame)."""

    def __init__(self):
        if not pygame.font.get_init():
            pygame.font.init()
        self._fonts: dict[tuple[str, int, bool], pygame.font.Font] = {}
        self._cache: dict[tuple, pygame.Surface] = {}
        self._paths = {kind: pygame.font.match_font(names) for kind, names in FONT_FAMILIES.items()}
        self._bold_paths = {kind: pygame.font.match_font(names, bold=True) for kind, names in FONT_FAMILIES.items()}

    def font(self, size: str = "body", kind: str = "sans", bold: bool = False) -> pygame.font.Font:
        key = (kind, style.FONT_SIZES[size], bold)
        if key not in self._fonts:
            path = (self._bold_paths if bold else self._paths)[kind] or self._paths[kind]
            font = pygame.font.Font(path, key[1])
            if bold and path == self._paths[kind]:
                font.set_bold(True)
            self._fonts[key] = font
        return self._fonts[key]

    def render(self, text: str, colour, size: str = "body", kind: str = "sans", bold: bool = False) -> pygame.Surface:
        key = (text, tuple(colour), size, kind, bold)
        surf = self._cache.get(key)
        if surf is None:
            if len(self._cache) >= TEXT_CACHE:
                self._cache.clear()
            surf = self.font(size, kind, bold).render(text, True, colour)
            self._cache[key] = surf
        return surf

    def blit(self, surface: pygame.Surface, text: str, pos, colour=style.TEXT, size: str = "body",
             kind: str = "sans", bold: bool = False, anchor: str = "topleft") -> pygame.Rect:
        surf = self.render(text, colour, size, kind, bold)
        rect = surf.get_rect(**{anchor: (int(pos[0]), int(pos[1]))})
        surface.blit(surf, rect)
        return rect


class Renderer:
    """Draws frames of one road."""

    def __init__(self, road, help_lines: HelpLines = ()):
        self.road = RoadGeometry.from_road(road)
        self.text = Text()
        self.help_lines = help_lines
        self._boxes: dict[tuple[int, int, int], pygame.Surface] = {}  # translucent backgrounds by size

    def render(self, surface: pygame.Surface, frame: FrameData) -> Layout:
        """Draw the whole window; returns the layout used (for the caller's hit tests)."""
        layout = Layout.for_size(*surface.get_size(), slider=frame.timeline is not None)
        vp = Viewport(layout.view, frame.view.center, frame.view.scale)
        surface.fill(style.BACKGROUND)
        surface.set_clip(pygame.Rect(layout.view.astuple()))
        self._top_down(surface, frame, vp)
        surface.set_clip(None)
        self._camera_panel(surface, layout.camera, frame.sensors, frame.view.layers)
        self._lidar_panel(surface, layout.lidar, frame.sensors, frame.view.layers)
        self._hud(surface, layout.hud, frame)
        if layout.slider is not None:
            self._slider(surface, layout.slider, frame)
        if frame.view.show_help:
            self._help(surface, layout.view)
        return layout

    # ---- top-down view ------------------------------------------------------------------------

    def _top_down(self, surface, frame: FrameData, vp: Viewport) -> None:
        layers, lights = frame.view.layers, dict(frame.lights)
        self._road(surface, vp, layers, lights, frame.route_xy)
        if "candidates" in layers:
            for path in frame.candidates:
                _polyline(surface, style.CANDIDATE, vp.to_screen(path), 1)
        if "predictions" in layers:
            self._predictions(surface, frame, vp)
        if "plan" in layers and len(frame.plan_xy) >= 2:
            self._plan(surface, frame, vp)
        self._actors(surface, frame, vp, "labels" in layers)
        self._title_bar(surface, frame, vp.rect)
        self._scale_bar(surface, vp)
        left = vp.rect.x  # the status line starts right of the inspector
        if frame.inspector:
            left = self._box_of_lines(surface, frame.inspector, (vp.rect.x + 10, vp.rect.y + 38), "selected actor").right
        if frame.hud.status:
            r = self.text.render(frame.hud.status, style.WARNING, "title", bold=True)
            x = max(vp.rect.x + (vp.rect.w - r.get_width()) // 2, left + 20)
            self._panel_box(surface, pygame.Rect(x - 10, vp.rect.y + 36, r.get_width() + 20, r.get_height() + 8))
            surface.blit(r, (x, vp.rect.y + 40))
        if "legend" in layers:
            self._legend(surface, vp.rect, frame.notes)

    def _grid(self, surface, vp: Viewport) -> None:
        """Faint lines every GRID_STEP metres, for a sense of distance off the road."""
        x0, y0, x1, y1 = vp.world_box()
        r = vp.rect
        step = GRID_STEP if GRID_STEP * vp.scale >= 24 else 5 * GRID_STEP
        for x in np.arange(math.ceil(x0 / step) * step, x1, step):
            px = vp.to_screen((x, 0.0))[0]
            pygame.draw.line(surface, style.GRID, (px, r.y), (px, r.y + r.h))
        for y in np.arange(math.ceil(y0 / step) * step, y1, step):
            py = vp.to_screen((0.0, y))[1]
            pygame.draw.line(surface, style.GRID, (r.x, py), (r.x + r.w, py))

    def _road(self, surface, vp: Viewport, layers, lights: dict, route_xy: np.ndarray) -> None:
        """Lane areas, the route band, crosswalks and markings on top of it, stop lines and light heads."""
        g = self.road
        box = vp.world_box(margin_px=4.0)
        self._grid(surface, vp)
        pts = vp.to_screen(g.points)
        colours = (style.ASPHALT, style.PARKING)
        for i in g.areas.visible(box):
            pygame.draw.polygon(surface, colours[g.areas.style[i]], pts[g.areas.start[i]:g.areas.stop[i]].tolist())
        if "route" in layers and len(route_xy) >= 2:
            width = max(3, int(round(1.8 * vp.scale)))
            _polyline(surface, style.ROUTE, vp.to_screen(route_xy), width, round_joints=True)
        if "markings" in layers:
            for quad in vp.to_screen(g.stripes[_quads_in(g.stripes, box)]):
                pygame.draw.polygon(surface, style.CROSSWALK, quad.tolist())
            width = max(1, int(round(MARKING_WIDTH * vp.scale)))
            for i in g.lines.visible(box):
                colour = style.MARKING[MARKING_COLOURS[g.lines.style[i]]]
                pygame.draw.lines(surface, colour, False, pts[g.lines.start[i]:g.lines.stop[i]].tolist(), width)
            keep = _quads_in(g.dashes, box)
            for dash, c in zip(vp.to_screen(g.dashes[keep]), g.dash_colour[keep]):
                pygame.draw.lines(surface, style.MARKING[MARKING_COLOURS[c]], False, dash.tolist(), width)
        width = max(2, int(round(STOP_LINE_WIDTH * vp.scale)))
        radius = max(3, int(round(0.7 * vp.scale)))
        keep = _quads_in(g.stop_lines, box)
        for (a, b), head, light in zip(vp.to_screen(g.stop_lines[keep]), vp.to_screen(g.heads[keep]),
                                       [g.stop_light[i] for i in np.flatnonzero(keep)]):
            state = lights.get(light)
            colour = style.LIGHT[state] if state else style.STOP_LINE
            pygame.draw.line(surface, colour, a, b, width)
            if light:
                pygame.draw.circle(surface, style.LIGHT_OFF, head, radius + 2)
                pygame.draw.circle(surface, colour if state else style.TEXT_DIM, head, radius)

    def _predictions(self, surface, frame: FrameData, vp: Viewport) -> None:
        pred = frame.prediction
        cls_of = dict(zip(frame.actors.ids.tolist(), frame.actors.cls.tolist()))
        every = max(int(round(1.0 / pred.dt)), 1)  # prediction points per second
        for a, actor_id in enumerate(pred.ids.tolist()):
            base = style.CLASS_COLOUR.get(cls_of.get(actor_id, 0), style.CANDIDATE)
            chosen = actor_id == frame.view.selected
            for m in range(pred.xy.shape[1]):
                p = float(pred.prob[a, m])
                colour = style.dim(base, 0.45 + 0.55 * p) if not chosen else style.SELECTED
                xy = vp.to_screen(pred.xy[a, m])
                _polyline(surface, colour, xy, 3 if chosen else 2)
                for q in xy[every - 1::every]:
                    pygame.draw.circle(surface, colour, q, 3 if chosen else 2)

    def _plan(self, surface, frame: FrameData, vp: Viewport) -> None:
        xy = vp.to_screen(frame.plan_xy)
        _polyline(surface, style.PLAN, xy, max(3, int(round(0.35 * vp.scale))), round_joints=True)
        if len(frame.plan_t):
            whole = np.floor(frame.plan_t - frame.plan_t[0] + 1e-9)
            ticks = np.flatnonzero(np.diff(whole) > 0) + 1  # first point of each new second
            for q in xy[ticks]:
                pygame.draw.circle(surface, style.PLAN_TICK, q, 3)

    def _actors(self, surface, frame: FrameData, vp: Viewport, labels: bool) -> None:
        actors = frame.actors
        corners = vp.to_screen(box_corners(_visible_boxes(actors.box, vp.scale)))
        for i in range(len(actors)):
            colour = style.CLASS_COLOUR.get(int(actors.cls[i]), style.CANDIDATE)
            if actors.cls[i] == PEDESTRIAN:
                centre = vp.to_screen(actors.box[i, :2])
                r = max(0.5 * actors.box[i, 3] * vp.scale, style.MIN_PERSON_PX)
                pygame.draw.circle(surface, colour, centre, r)
                pygame.draw.circle(surface, style.TEXT_DARK, centre, r, 1)
            else:
                _vehicle(surface, corners[i], colour, style.TEXT_DARK)
            if actors.ids[i] == frame.view.selected:
                centre = vp.to_screen(actors.box[i, :2])
                radius = 0.5 * math.hypot(*actors.box[i, 3:5]) * vp.scale + 6
                pygame.draw.circle(surface, style.SELECTED, centre, radius, 2)
        ego = vp.to_screen(box_corners(_visible_boxes(frame.ego_box[None], vp.scale)))[0]
        _vehicle(surface, ego, style.EGO_FILL, style.EGO_EDGE, edge_width=2)
        if labels:
            for i in range(len(actors)):
                top = float(np.min(corners[i, :, 1]))
                centre_x = float(np.mean(corners[i, :, 0]))
                text = f"#{actors.ids[i]}  {actors.speed[i]:.1f} m/s"
                r = self.text.render(text, style.TEXT, "small")
                rect = r.get_rect(midbottom=(int(centre_x), int(top) - 5))
                pygame.draw.rect(surface, style.LABEL_BG, rect.inflate(8, 4), border_radius=3)
                surface.blit(r, rect)

    def _title_bar(self, surface, frame: FrameData, rect: Rect) -> None:
        bar = pygame.Rect(rect.x, rect.y, rect.w, 28)
        self._panel_box(surface, bar, border=False)
        brand = self.text.blit(surface, "drivestack", (bar.x + 10, bar.centery), style.ACCENT, "title", bold=True,
                               anchor="midleft")
        self.text.blit(surface, frame.hud.title, (brand.right + 14, bar.centery), style.TEXT, "title",
                       anchor="midleft")
        x = bar.right - 10
        badges = [(frame.hud.mode.upper(), style.MODE_COLOUR.get(frame.hud.mode, style.ACCENT))]
        if frame.hud.paused:
            badges.append(("PAUSED", style.WARNING))
        badges.append((frame.hud.rate, style.TEXT_DIM))
        for label, colour in badges:
            r = self.text.render(label, style.TEXT_DARK, "small", bold=True)
            box = pygame.Rect(0, 0, r.get_width() + 14, 20)
            box.midright = (x, bar.centery)
            pygame.draw.rect(surface, colour, box, border_radius=4)
            surface.blit(r, r.get_rect(center=box.center))
            x = box.left - 8

    def _scale_bar(self, surface, vp: Viewport) -> None:
        metres = next((m for m in SCALE_BAR_STEPS if m * vp.scale >= 70), SCALE_BAR_STEPS[-1])
        px = int(round(metres * vp.scale))
        x1, y = vp.rect.x + vp.rect.w - 16, vp.rect.y + vp.rect.h - 18
        x0 = x1 - px
        pygame.draw.line(surface, style.TEXT, (x0, y), (x1, y), 2)
        for x in (x0, x1):
            pygame.draw.line(surface, style.TEXT, (x, y - 5), (x, y + 1), 2)
        self.text.blit(surface, f"{metres} m", ((x0 + x1) // 2, y - 5), style.TEXT, "small", anchor="midbottom")
        self.text.blit(surface, "N \u2191", (x1, y - 24), style.TEXT_DIM, "small", anchor="bottomright")

    def _legend(self, surface, rect: Rect, notes: tuple[str, ...]) -> None:
        items = [("ego", "box", style.EGO_FILL)]
        items += [(name, "dot" if cls == PEDESTRIAN else "box", style.CLASS_COLOUR[cls])
                  for cls, name in enumerate(CLASS_NAMES)]
        items += [("route", "band", style.ROUTE), ("chosen trajectory", "line", style.PLAN),
                  ("prediction", "thin", style.dim(style.CLASS_COLOUR[0], 0.9)),
                  ("candidates", "thin", style.CANDIDATE), ("light: green/yellow/red", "lights", None),
                  ("stop line", "band", style.STOP_LINE)]
        col_w, row_h, pad = 170, 18, 10
        rows = (len(items) + 1) // 2
        height = pad * 2 + 20 + rows * row_h + len(notes) * 16
        box = pygame.Rect(rect.x + 10, rect.y + rect.h - height - 10, 2 * col_w + pad, height)
        self._panel_box(surface, box)
        self.text.blit(surface, "LEGEND", (box.x + pad, box.y + pad - 2), style.TEXT_DIM, "small", bold=True)
        for k, (label, kind, colour) in enumerate(items):
            x = box.x + pad + (k // rows) * col_w
            y = box.y + pad + 20 + (k % rows) * row_h + row_h // 2
            _swatch(surface, kind, colour, x, y)
            self.text.blit(surface, label, (x + 30, y), style.TEXT, "small", anchor="midleft")
        for k, note in enumerate(notes):
            self.text.blit(surface, note, (box.x + pad, box.y + pad + 20 + rows * row_h + 16 * k), style.TEXT_DIM,
                           "small")

    # ---- panels --------------------------------------------------------------------------------

    def _panel(self, surface, rect: Rect, title: str, detail: str = "") -> pygame.Rect:
        """Panel frame with a title strip; returns the content rectangle."""
        outer = pygame.Rect(rect.astuple())
        pygame.draw.rect(surface, style.PANEL, outer)
        strip = pygame.Rect(outer.x, outer.y, outer.w, PANEL_TITLE)
        pygame.draw.rect(surface, style.PANEL_TITLE, strip)
        self.text.blit(surface, title, (strip.x + 10, strip.centery), style.TEXT, "small", bold=True, anchor="midleft")
        if detail:
            self.text.blit(surface, detail, (strip.right - 10, strip.centery), style.TEXT_DIM, "small",
                           anchor="midright")
        pygame.draw.line(surface, style.PANEL_EDGE, outer.topleft, outer.bottomleft)
        pygame.draw.line(surface, style.PANEL_EDGE, strip.bottomleft, strip.bottomright)
        return panel_content(rect)

    def _camera_panel(self, surface, rect: Rect, sensors: SensorImages, layers) -> None:
        inner = self._panel(surface, rect, "CAMERA", f"front, {sensors.source}" if sensors.source else "front")
        pygame.draw.rect(surface, style.PANEL_INNER, inner)
        if sensors.camera is None:
            self._placeholder(surface, inner, sensors.camera_note)
            return
        image = sensors.camera
        height, width = image.shape[:2]
        surf = pygame.image.frombuffer(np.ascontiguousarray(image).tobytes(), (width, height), "RGB")
        placed = fit_image(inner, width, height)
        surface.blit(pygame.transform.smoothscale(surf, placed.size), placed)
        if sensors.camera_overlay is not None:
            clip = surface.get_clip()
            surface.set_clip(placed)
            self._camera_overlay(surface, placed, (placed.w / width, placed.h / height), sensors.camera_overlay,
                                 layers)
            surface.set_clip(clip)

    def _camera_overlay(self, surface, placed: pygame.Rect, k: tuple[float, float], overlay: CameraOverlay,
                        layers) -> None:
        """What perception saw, over the image drawn at `placed` with k [screen px per image px] along u and v:
        the attention heatmap under the lane lines, the detections and the light heads read."""

        def to_screen(uv: np.ndarray) -> np.ndarray:
            return np.column_stack([placed.x + uv[:, 0] * k[0], placed.y + uv[:, 1] * k[1]])

        def screen_box(box) -> pygame.Rect:
            (x0, y0), (x1, y1) = to_screen(np.reshape(box, (2, 2)))
            x0, y0 = math.floor(x0), math.floor(y0)
            return pygame.Rect(x0, y0, max(math.ceil(x1) - x0, 2), max(math.ceil(y1) - y0, 2))

        tags: list[pygame.Rect] = []  # labels placed so far; a label that would cover one moves or is left out
        if "attention" in layers and overlay.attention is not None:
            self._attention(surface, placed, overlay.attention)
        if "lanes seen" in layers:
            for line in overlay.lanes:
                _polyline(surface, style.LANE_SEEN, to_screen(line), 2)
        if "detections" in layers:
            for box, cls, score in zip(overlay.boxes, overlay.labels, overlay.scores):
                if cls.startswith("light_"):
                    state = cls[len("light_"):]
                    colour, label = style.LIGHT.get(state, style.HEAD_UNREAD), f"{state} light {score:.2f}"
                else:
                    colour, label = style.DETECTION_COLOUR.get(cls, style.TEXT), f"{cls} {score:.2f}"
                r = screen_box(box)
                pygame.draw.rect(surface, colour, r, 1)
                self._tag(surface, label, colour, r, tags)
        if "heads read" in layers:
            for box, state in zip(overlay.head_boxes, overlay.head_states):
                colour = style.LIGHT.get(state, style.HEAD_UNREAD)
                r = screen_box(box).inflate(6, 6)
                pygame.draw.rect(surface, colour, r, 2)
                self._tag(surface, state or "not read", colour, r, tags)

    def _tag(self, surface, text: str, colour, box: pygame.Rect, tags: list[pygame.Rect]) -> None:
        """A small label on a dark strip just above a box on the camera image, or below it when that place is
        taken by another label; left out when both are."""
        r = self.text.render(text, colour, "small")
        for where in (r.get_rect(bottomleft=(box.x, box.y - 1)), r.get_rect(topleft=(box.x, box.bottom + 1))):
            strip = where.inflate(4, 0)
            if strip.collidelist(tags) < 0:
                pygame.draw.rect(surface, style.LABEL_BG, strip)
                surface.blit(r, where)
                tags.append(strip)
                return

    def _attention(self, surface, placed: pygame.Rect, attention: np.ndarray) -> None:
        """The (h, w) attention map over the whole image: its colour and opacity grow with the attention."""
        a = np.clip(attention / max(float(attention.max()), 1e-12), 0.0, 1.0)  # 1 at the peak
        lo, hi = (np.array(c, dtype=float) for c in style.ATTENTION)
        heat = pygame.Surface((a.shape[1], a.shape[0]), pygame.SRCALPHA)
        rgb = pygame.surfarray.pixels3d(heat)
        rgb[:] = (lo + a.T[..., None] * (hi - lo)).astype(np.uint8)
        del rgb  # unlock the surface
        alpha = pygame.surfarray.pixels_alpha(heat)
        alpha[:] = (style.ATTENTION_ALPHA * a.T).astype(np.uint8)
        del alpha
        surface.blit(pygame.transform.smoothscale(heat, placed.size), placed)

    def _lidar_panel(self, surface, rect: Rect, sensors: SensorImages, layers) -> None:
        detail = f"bird's-eye, \u00b1{LIDAR_RANGE:.0f} m" + (f", {sensors.source}" if sensors.source else "")
        inner = self._panel(surface, rect, "LIDAR", detail)
        pygame.draw.rect(surface, style.PANEL_INNER, inner)
        if sensors.lidar is None:
            self._placeholder(surface, inner, sensors.lidar_note)
            return
        k = 0.5 * min(inner.w, inner.h) / LIDAR_RANGE  # [px/m]
        pixels = np.zeros((inner.w, inner.h, 3), dtype=np.uint8)
        pixels[:] = style.PANEL_INNER
        pts = sensors.lidar
        px = np.round(inner.w / 2 - pts[:, 1] * k).astype(np.int64)  # ego y (left) to the panel's left
        py = np.round(inner.h / 2 - pts[:, 0] * k).astype(np.int64)  # ego x (forward) up
        ok = (px >= 0) & (px < inner.w) & (py >= 0) & (py < inner.h)
        intensity = np.clip(pts[ok, 3], 0.0, 1.0)[:, None]
        pixels[px[ok], py[ok]] = (np.array([70, 110, 140]) + intensity * np.array([150, 145, 115])).astype(np.uint8)
        pygame.surfarray.blit_array(surface.subsurface(inner), pixels)
        if sensors.lidar_overlay is not None and "fused objects" in layers:
            self._fused(surface, inner, k, sensors.lidar_overlay)
        centre = inner.center
        pygame.draw.polygon(surface, style.EGO_EDGE, [(centre[0], centre[1] - 6), (centre[0] - 4, centre[1] + 4),
                                                      (centre[0] + 4, centre[1] + 4)])

    def _fused(self, surface, inner: pygame.Rect, k: float, overlay: LidarOverlay) -> None:
        """The fused objects' ego-frame boxes, outlined in their class colour (ego x up, ego y left)."""
        corners = box_corners(overlay.boxes)  # (F, 4, 2) [m] ego frame
        screen = np.stack([inner.x + inner.w / 2 - corners[..., 1] * k, inner.y + inner.h / 2 - corners[..., 0] * k],
                          axis=-1)
        clip = surface.get_clip()
        surface.set_clip(inner)
        for quad, cls in zip(screen, overlay.cls):
            pygame.draw.polygon(surface, style.CLASS_COLOUR.get(int(cls), style.TEXT), quad.tolist(), 2)
        surface.set_clip(clip)

    def _placeholder(self, surface, inner: pygame.Rect, note: str) -> None:
        for k in range(0, inner.w + inner.h, 24):  # faint hatching marks an empty panel
            a = (inner.x + k, inner.y) if k < inner.w else (inner.right - 1, inner.y + k - inner.w)
            b = (inner.x, inner.y + k) if k < inner.h else (inner.x + k - inner.h, inner.bottom - 1)
            pygame.draw.line(surface, style.PANEL, a, b)
        r = self.text.render(note, style.TEXT_DIM, "body")
        box = r.get_rect(center=inner.center).inflate(20, 10)
        pygame.draw.rect(surface, style.PANEL_INNER, box)
        surface.blit(r, r.get_rect(center=inner.center))

    def _hud(self, surface, rect: Rect, frame: FrameData) -> None:
        h = frame.hud
        inner = self._panel(surface, rect, "STATUS", f"{h.fps:.0f} fps" if h.fps > 0 else "")
        latency = dict(h.latency_ms)
        score = "-" if not math.isfinite(h.score) else f"{h.score:.1f}"
        rows = [
            ("time", f"{h.t:6.2f} s  of {h.t_end:.0f} s"),
            ("speed", f"{h.speed_mps * 3.6:5.1f} km/h  ({h.speed_mps:.1f} m/s)"),
            ("accel", f"{h.accel_mps2:+5.2f} m/s\u00b2"),
            ("steering", f"{math.degrees(h.steer_rad):+5.1f}\u00b0"),
            (h.score_label, score),
            ("behaviour", h.behaviour or "-"),
            *health_rows(h.health),
            ("planner", f"{h.planner:<8}{_ms(latency.get('planning')):>10}"),
            ("perception", f"{h.perception:<8}{_ms(latency.get('perception')):>10}"),
            ("prediction", f"{'':<8}{_ms(latency.get('prediction')):>10}"),
        ]
        if h.perception_frames:
            rows.append(("frames", h.perception_frames))
        row_h = 20
        y = inner.y
        for label, value in rows:
            self.text.blit(surface, label, (inner.x + 4, y), style.TEXT_DIM, "body")
            self.text.blit(surface, value, (inner.x + 110, y), style.TEXT, "body", kind="mono")
            y += row_h
        self.text.blit(surface, "lights", (inner.x + 4, y), style.TEXT_DIM, "body")
        x = inner.x + 110
        if not h.lights:
            self.text.blit(surface, "-", (x, y), style.TEXT, "body", kind="mono")
        for name, state in h.lights:
            pygame.draw.circle(surface, style.LIGHT[state], (x + 6, y + 9), 6)
            r = self.text.blit(surface, name, (x + 16, y), style.TEXT, "body")
            x = r.right + 12
        y += row_h + 4
        self._steer_gauge(surface, pygame.Rect(inner.x + 4, y, inner.w - 8, 10), h.steer_rad)
        self.text.blit(surface, "h: help", (inner.right - 2, inner.bottom), style.TEXT_DIM, "small",
                       anchor="bottomright")

    def _steer_gauge(self, surface, rect: pygame.Rect, steer: float) -> None:
        pygame.draw.rect(surface, style.PANEL_INNER, rect, border_radius=4)
        mid = rect.centerx
        reach = int(np.clip(steer / 0.6, -1.0, 1.0) * rect.w / 2)  # full bar at 0.6 rad
        bar = pygame.Rect(min(mid, mid - reach), rect.y, abs(reach), rect.h)
        pygame.draw.rect(surface, style.ACCENT, bar, border_radius=4)
        pygame.draw.line(surface, style.TEXT, (mid, rect.y - 2), (mid, rect.bottom + 1))

    def _slider(self, surface, rect: Rect, frame: FrameData) -> None:
        tl = frame.timeline
        pygame.draw.rect(surface, style.PANEL, rect.astuple())
        track = slider_track(rect)
        pygame.draw.rect(surface, style.PANEL_INNER, track, border_radius=3)
        frac = tl.t / tl.t_end if tl.t_end > 0 else 0.0
        done = pygame.Rect(track.x, track.y, int(track.w * frac), track.h)
        pygame.draw.rect(surface, style.ACCENT, done, border_radius=3)
        for t, label in tl.marks:
            x = track.x + int(track.w * t / tl.t_end) if tl.t_end > 0 else track.x
            colour = style.LIGHT["red"] if label.startswith("collision") else style.WARNING
            pygame.draw.line(surface, colour, (x, track.y - 6), (x, track.bottom + 5), 2)
        pygame.draw.circle(surface, style.TEXT, (track.x + int(track.w * frac), track.centery), 8)
        glyph = "\u25b6 playing" if tl.playing else "\u2759\u2759 paused"
        self.text.blit(surface, glyph, (rect.x + 10, rect.y + rect.h // 2), style.TEXT, "small", anchor="midleft")
        self.text.blit(surface, f"{tl.t:6.2f} / {tl.t_end:.2f} s", (rect.x + rect.w - 10, rect.y + rect.h // 2),
                       style.TEXT, "small", kind="mono", anchor="midright")

    def _help(self, surface, rect: Rect) -> None:
        lines = self.help_lines + tuple((f"F{k + 1}", f"layer: {LAYER_TITLES[name]}")
                                        for k, name in enumerate(LAYER_TITLES))
        col_w, row_h = 500, 20
        columns = 1 if 60 + row_h * len(lines) <= rect.h - 20 else 2  # two columns in a small window
        rows = -(-len(lines) // columns)
        box = pygame.Rect(0, 0, col_w * columns + 20, 60 + row_h * rows)
        box.center = (rect.x + rect.w // 2, rect.y + rect.h // 2)
        self._panel_box(surface, box, alpha=HELP_ALPHA)
        self.text.blit(surface, "KEYS AND MOUSE", (box.x + 16, box.y + 14), style.ACCENT, "title", bold=True)
        for k, (key, what) in enumerate(lines):
            x, y = box.x + 16 + (k // rows) * col_w, box.y + 44 + (k % rows) * row_h
            self.text.blit(surface, key, (x, y), style.WARNING, "body", kind="mono")
            self.text.blit(surface, what, (x + 150, y), style.TEXT, "body")

    def _box_of_lines(self, surface, lines, topleft, title: str) -> pygame.Rect:
        width = max(self.text.render(s, style.TEXT, "small", kind="mono").get_width() for s in lines) + 20
        box = pygame.Rect(topleft[0], topleft[1], max(width, 180), 30 + 16 * len(lines))
        self._panel_box(surface, box)
        self.text.blit(surface, title.upper(), (box.x + 10, box.y + 7), style.TEXT_DIM, "small", bold=True)
        for k, line in enumerate(lines):
            self.text.blit(surface, line, (box.x + 10, box.y + 24 + 16 * k), style.TEXT, "small", kind="mono")
        return box

    def _panel_box(self, surface, box: pygame.Rect, border: bool = True, alpha: int = style.OVERLAY_ALPHA) -> None:
        """A translucent dark box over the map."""
        key = (box.w, box.h, alpha)
        bg = self._boxes.get(key)
        if bg is None:
            if len(self._boxes) >= TEXT_CACHE:
                self._boxes.clear()
            bg = pygame.Surface(key[:2], pygame.SRCALPHA)
            bg.fill((*style.PANEL_INNER, alpha))
            self._boxes[key] = bg
        surface.blit(bg, box.topleft)
        if border:
            pygame.draw.rect(surface, style.PANEL_EDGE, box, 1, border_radius=2)


def panel_content(rect: Rect) -> pygame.Rect:
    """Where a panel's content goes: under its title strip, inside a margin."""
    return pygame.Rect(rect.x + 6, rect.y + PANEL_TITLE + 6, rect.w - 12, rect.h - PANEL_TITLE - 12)


def fit_image(inner: pygame.Rect, width: int, height: int) -> pygame.Rect:
    """Where an image of width x height [px] is drawn in `inner`: as large as fits, aspect kept, centred."""
    k = min(inner.w / width, inner.h / height)
    placed = pygame.Rect(0, 0, max(int(width * k), 1), max(int(height * k), 1))
    placed.center = inner.center
    return placed


def slider_track(rect: Rect) -> pygame.Rect:
    """The slider's track inside its strip (the app uses it for mouse hits)."""
    return pygame.Rect(rect.x + 110, rect.y + rect.h // 2 - 3, rect.w - 250, 6)


def _ms(ms: float | None) -> str:
    return "-" if ms is None or not math.isfinite(ms) else f"{ms:6.1f} ms"


def _quads_in(shapes: np.ndarray, world_box) -> np.ndarray:
    """bool (S,): shapes (S, V, 2) with a vertex inside world_box."""
    if not len(shapes):
        return np.zeros(0, dtype=bool)
    x0, y0, x1, y1 = world_box
    x, y = shapes[..., 0], shapes[..., 1]
    return ((x.max(axis=1) >= x0) & (x.min(axis=1) <= x1) & (y.max(axis=1) >= y0) & (y.min(axis=1) <= y1))


def _visible_boxes(box: np.ndarray, scale: float) -> np.ndarray:
    """Boxes grown to at least MIN_BOX_PX on screen."""
    out = np.array(box, dtype=float).reshape(-1, 5)
    out[:, 3:5] = np.maximum(out[:, 3:5], style.MIN_BOX_PX / scale)
    return out


def _polyline(surface, colour, xy: np.ndarray, width: int, round_joints: bool = False) -> None:
    """Screen polyline (N, 2), drawn only where it crosses the surface's clip area."""
    for run in _runs_inside(xy, surface.get_clip().inflate(2 * width + 4, 2 * width + 4)):
        if len(run) < 2:
            continue
        pts = run.tolist()
        pygame.draw.lines(surface, colour, False, pts, width)
        if round_joints and width > 3:
            for p in pts[1:-1]:
                pygame.draw.circle(surface, colour, p, width / 2 - 0.5)


def _runs_inside(xy: np.ndarray, rect: pygame.Rect) -> list[np.ndarray]:
    """Pieces of a polyline made of the segments with an end inside rect."""
    inside = (xy[:, 0] >= rect.left) & (xy[:, 0] <= rect.right) & (xy[:, 1] >= rect.top) & (xy[:, 1] <= rect.bottom)
    if inside.all():
        return [xy]
    keep = inside.copy()
    keep[1:] |= inside[:-1]  # a segment's far end, so lines reach the edge
    keep[:-1] |= inside[1:]
    idx = np.flatnonzero(keep)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return [xy[part] for part in np.split(idx, breaks)]


def _vehicle(surface, corners: np.ndarray, fill, edge, edge_width: int = 1) -> None:
    """An oriented box with a windscreen line marking its front (corners: rear-right, front-right, front-left,
    rear-left)."""
    pts = corners.tolist()
    pygame.draw.polygon(surface, fill, pts)
    pygame.draw.polygon(surface, edge, pts, edge_width)
    rr, fr, fl, rl = corners
    a = fr + 0.22 * (rr - fr)
    b = fl + 0.22 * (rl - fl)
    if np.hypot(*(fr - rr)) > 10:
        pygame.draw.line(surface, edge, a, b, edge_width)


def _swatch(surface, kind: str, colour, x: int, y: int) -> None:
    if kind == "box":
        pygame.draw.rect(surface, colour, (x, y - 5, 22, 10))
        pygame.draw.rect(surface, style.TEXT_DARK, (x, y - 5, 22, 10), 1)
    elif kind == "dot":
        pygame.draw.circle(surface, colour, (x + 11, y), 5)
    elif kind == "band":
        pygame.draw.rect(surface, colour, (x, y - 4, 22, 8))
    elif kind == "line":
        pygame.draw.line(surface, colour, (x, y), (x + 22, y), 4)
    elif kind == "thin":
        pygame.draw.line(surface, colour, (x, y), (x + 22, y), 2)
    elif kind == "lights":
        for k, state in enumerate(("green", "yellow", "red")):
            pygame.draw.circle(surface, style.LIGHT[state], (x + 3 + 8 * k, y), 3)


def health_rows(health: str) -> list[tuple[str, str]]:
    """The status panel's rows for perception's health (PerceptionHealth.describe(): "mode" or "mode: camera
    black 2.0 s, lidar empty 0.4 s"): the mode, then the lost sensors and their issues on a row of their own."""
    mode, _, faults = health.partition(": ")
    rows = [("sensors", mode or "-")]
    if faults:
        rows.append(("", ", ".join(" ".join(f.split()[:2]) for f in faults.split(", "))))
    return rows

