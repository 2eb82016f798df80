"""The pygame view: drive a scenario live, replay a recorded run, render frames headless.

Gather, then draw: `frame` collects what one frame shows into a frozen
FrameData (no pygame), `draw.Renderer` draws any FrameData, and the apps
(`live.LiveView`, `replay.ReplayView`) own the window, the keys and the clock.
pygame is imported only in this package; `cli.add_view_parsers` adds the
`drive`, `replay` and `render` sub-commands without importing it.
"""
import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's import banner would clutter command output
