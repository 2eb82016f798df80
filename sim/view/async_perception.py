"""Learned perception off the simulation's thread, for the live view: frames it has no time for are dropped.

Learned perception takes longer per cycle (50-150 ms on a 2-core machine) than
the stack's period (100 ms). Run in step, as `run` and `bench` do, it would
slow the simulated clock; the live view instead keeps to the wall clock and
lets perception fall behind, as a car's would:

    every stack cycle   if the worker is busy: drop this frame (count it)
                        else: render the sensor frames here, at the world's instant,
                              and hand them with the ego state to the worker
    always              return the latest finished PerceptionOutput

The world is read only on the calling thread; the worker runs only
`inner.perceive(camera, lidar, ego)`. Results are taken over on the calling
thread too (`poll`), so the output, its CycleRecord and the counters change
only there. A dropped frame is not rendered: the camera panel shows the frames
perception used, so a frame nobody looks at is not worth its rendering time.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor

from sim.types import PerceptionOutput


class AsyncPerception:
    """Wraps a perception that renders its own frames (`inner.rig.capture`, `inner.perceive`, `inner.last`)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = getattr(inner, "name", "learned")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perception")
        self._running: Future | None = None  # the cycle on the worker, None when it is idle
        self._faults = None  # the sensors' fault state, carried from frame to frame
        self.output: PerceptionOutput | None = None  # latest finished output, None before the first
        self.last = None  # perception.learned.CycleRecord of that output, None before the first
        self.submitted = 0  # frames handed to the worker
        self.completed = 0  # frames whose output has been taken over
        self.dropped = 0  # stack cycles whose frame was dropped because the worker was busy
        self.latency_ms = math.nan  # [ms] wall time of the latest finished cycle on the worker
        self.render_ms = math.nan  # [ms] rendering time of the latest submitted frame (on the calling thread)

    def __call__(self, world) -> PerceptionOutput:
        self.poll()
        if self._running is not None:
            self.dropped += 1
        else:
            t0 = time.perf_counter()
            camera, lidar, self._faults = self.inner.rig.capture(world, self._faults)
            self.render_ms = 1e3 * (time.perf_counter() - t0)
            self._running = self._pool.submit(self._perceive, camera, lidar, world.ego_state())
            self.submitted += 1
        if self.output is None:
            return PerceptionOutput(t=world.t, objects=())
        return self.output

    def _perceive(self, camera, lidar, ego):
        """On the worker: one cycle, its record and its wall time [ms]."""
        t0 = time.perf_counter()
        out = self.inner.perceive(camera, lidar, ego)
        return out, self.inner.last, 1e3 * (time.perf_counter() - t0)

    def poll(self) -> bool:
        """Take over the worker's result if it has finished (an error there is raised here); True if it had."""
        if self._running is None or not self._running.done():
            return False
        future, self._running = self._running, None
        self.output, self.last, self.latency_ms = future.result()
        self.completed += 1
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the cycle on the worker (if any) finishes, and take it over; True if one was taken."""
        if self._running is None:
            return False
        self._running.exception(timeout)  # waits; the error, if any, is raised by poll
        return self.poll()

    @property
    def frames(self) -> int:
        """Stack cycles seen: submitted plus dropped."""
        return self.submitted + self.dropped

    def close(self) -> None:
        """Let the running cycle finish, stop the worker and close the inner perception (its sensor rig)."""
        self._pool.shutdown(wait=True)
        self._running = None
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
