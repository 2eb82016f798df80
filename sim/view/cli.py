"""The `drive`, `replay` and `render` sub-commands of `drivestack`.

`add_view_parsers(sub)` registers them on an argparse sub-parser group; each
sets `func(args) -> exit code`. pygame is imported only when a command runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_SIZE = "1280x800"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 1280x800, got {text!r}") from None
    if w < 640 or h < 480:
        raise ValueError(f"--size must be at least 640x480, got {text!r}")
    return w, h


def resolve_scenario(name: str) -> Path:
    """A scenario file path, or the file of a shipped scenario named `name` or `suite/name`."""
    from scenarios.loader import shipped_suites_dir

    path = Path(name)
    if path.exists():
        return path
    root = shipped_suites_dir()
    stem = name[:-5] if name.endswith(".yaml") else name
    found = sorted(root.glob(f"{stem}.yaml")) + sorted(root.glob(f"*/{stem}.yaml"))
    if found:
        return found[0]
    names = ", ".join(p.stem for p in sorted(root.glob("*/*.yaml")))
    raise FileNotFoundError(f"no scenario file {name!r} and no shipped scenario of that name; shipped: {names}")


def _cmd_drive(args) -> int:
    from scenarios.loader import ScenarioError, load_scenario

    try:
        path = resolve_scenario(args.scenario)
        scenario = load_scenario(path)
        size = _size(args.size)
    except (FileNotFoundError, ScenarioError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    from sim.view.live import LiveView

    headless = args.until is not None
    # headless, the run is stepped as fast as it goes, with no wall clock to keep to: learned perception
    # runs in step, every cycle, as in `run`
    app = LiveView(scenario, seed=args.seed, planner=args.planner, perception=args.perception, size=size,
                   window=not headless, screenshot_dir=args.screenshots, scenario_file=str(path.resolve()),
                   perception_off_clock=not headless, attention=args.attention == "on")
    try:
        if headless:
            while app.world.t < args.until - 1e-9 and not app.finished:
                app.step()
            app.running_score(refresh=True)
            app.draw()
            if args.screenshot:
                print(f"wrote {app.screenshot(args.screenshot)}")
        else:
            app.run()
    finally:
        app.close()
    if args.save_log:
        print(f"wrote {app.save_log(args.save_log)}")
    return 0


def _load(args):
    """The log and its scenario; ValueError (ScenarioError included) with a message for the user."""
    from sim.log import RunLog
    from sim.view.replay import scenario_for_log

    if not Path(args.log).is_file():
        raise ValueError(f"no run log at {args.log}")
    log = RunLog.load(args.log)
    return log, scenario_for_log(log, args.scenario)


def _cmd_replay(args) -> int:
    try:
        log, scenario = _load(args)
        size = _size(args.size)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    from sim.view.replay import ReplayView

    ReplayView(log, scenario, size=size, screenshot_dir=args.screenshots).run()
    return 0


def _cmd_render(args) -> int:
    try:
        log, scenario = _load(args)
        size = _size(args.size)
        if not args.fps > 0:
            raise ValueError(f"--fps must be positive, got {args.fps}")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    from sim.view.replay import EncoderMissing, render_log

    try:
        written = render_log(log, scenario, args.out, fps=args.fps, size=size)
    except EncoderMissing as err:
        print(err, file=sys.stderr)
        return 3
    if isinstance(written, list):
        print(f"wrote {len(written)} frames to {args.out}")
    else:
        print(f"wrote {written}")
    return 0


def add_view_parsers(sub) -> None:
    """Register `drive`, `replay` and `render` on the sub-parsers of the `drivestack` command."""
    from scenarios.runs import DEFAULT_PLANNER, PERCEPTIONS, PLANNERS

    p = sub.add_parser("drive", help="drive a scenario live in a window: autopilot or by hand")
    p.add_argument("scenario", help="scenario file, or a shipped scenario's name (e.g. unprotected_left)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--planner", default=DEFAULT_PLANNER, choices=PLANNERS)
    p.add_argument("--perception", default="oracle", choices=PERCEPTIONS)
    p.add_argument("--attention", default="off", choices=("on", "off"),
                   help="goal-driven attention: its heatmap over the camera panel (F11)")
    p.add_argument("--size", default=DEFAULT_SIZE, help="window size WxH in pixels")
    p.add_argument("--screenshots", default="screenshots", help="folder for screenshots (key p)")
    p.add_argument("--save-log", default=None, help="write the run as a RunLog .npz when the window closes")
    p.add_argument("--until", type=float, default=None,
                   help="no window: simulate this many seconds as fast as possible, draw once and exit")
    p.add_argument("--screenshot", default=None, help="with --until: write the drawn frame to this PNG")
    p.set_defaults(func=_cmd_drive)

    for name, text in (("replay", "play a recorded run (RunLog .npz) with a time slider"),
                       ("render", "draw a recorded run headless: PNG frames into a folder, or an MP4")):
        p = sub.add_parser(name, help=text)
        p.add_argument("log", help="RunLog .npz (drivestack run writes them under OUT/logs)")
        p.add_argument("--scenario", default=None,
                       help="scenario file the run used (default: the file named in the log)")
        p.add_argument("--size", default=DEFAULT_SIZE, help="frame size WxH in pixels")
        if name == "replay":
            p.add_argument("--screenshots", default="screenshots", help="folder for screenshots (key p)")
            p.set_defaults(func=_cmd_replay)
        else:
            p.add_argument("--out", required=True, help="folder for PNG frames, or a .mp4 file (needs ffmpeg)")
            p.add_argument("--fps", type=float, default=10.0, help="frames per simulated second")
            p.set_defaults(func=_cmd_render)
