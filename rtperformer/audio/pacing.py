"""How far ahead of the sound card the render thread stays: one device period plus a measured lead.

The render thread is woken by every audio callback (:meth:`rtperformer.audio.output.AudioOutput.wait_callback`)
and then renders until the output ring holds ``target(period) = max(period, step) + lead`` frames: the
block the device pulls next, from the freshest MIDI, plus ``lead`` frames of margin. A period shorter than
one model step (64 or 128 frames against a 256-sample hop) keeps a whole step queued, so that a step's
compute fits between a wake-up and the moment the ring runs dry. A note-on therefore reaches
the next device period whenever the render is in time, whatever the period (64 ... 2048).

``lead`` is not a guess: it starts at ``floor`` (``serve.lead_samples``) and follows what is measured.

- Underruns: a window with an underrun grows ``lead`` by one period (at least ``min_grow`` frames, so
  that small periods reach a step's compute time quickly), up to ``ceiling``.
- Slack: after each write the render thread reports how long before its deadline the new audio arrived
  (the deadline is the callback that will read its first frame). Once ``calm_windows`` windows in a row
  had no underrun, their lowest slack less ``guard_s`` says how much earlier the audio could have been
  queued: ``lead`` shrinks by that many whole periods (never below ``floor``).

Windows are ``window_s`` long (0.25 s; 4 calm windows = 1 s), so after an overload (a CPU hog, a burst of
notes) the margin it needed is given back about a second after the load ends, a machine whose render
jitters keeps the margin that jitter needs (a spike within the last second holds it), and being late is
never answered with silence: late audio is played late (rtperformer/audio/ring.py) and the lead grows so
the next blocks are not.

Delay this stage adds to a note: the wait for the next device period (0..period) plus ``lead``; the
status line shows ``lead`` and the ring fill.
"""

from __future__ import annotations

import math


class Pacer:
    """Render-ahead target for one output.

    ``rate``: device frames per second; ``floor`` / ``ceiling``: bounds of ``lead`` in frames;
    ``guard_s``: slack kept on top of a shrunk lead (scheduling noise of the wake-up); ``step``: device
    frames one render step writes.
    """

    def __init__(self, rate: int, floor: int = 0, ceiling: int = 4096, window_s: float = 0.25,
                 guard_s: float = 0.001, calm_windows: int = 4, min_grow: int = 128, step: int = 0):
        if floor < 0 or ceiling < floor:
            raise ValueError(f"lead bounds must satisfy 0 <= floor <= ceiling (got {floor}, {ceiling})")
        self.rate = int(rate)
        self.floor = int(floor)
        self.ceiling = int(ceiling)
        self.window_s = float(window_s)
        self.guard_s = float(guard_s)
        self.calm_windows = int(calm_windows)
        self.min_grow = int(min_grow)
        self.step = int(step)
        self.lead = self.floor
        self.min_slack_s = math.inf  # lowest slack of the open window
        self._calm: list[float] = []  # lowest slack of each calm window since the last change
        self._t_window = None
        self._underruns = 0
        self.grown = 0  # windows that grew the lead (underruns)
        self.shrunk = 0  # windows that shrank it
        self.late_windows = 0  # windows in a row with underruns (the status line's overload notice)

    def target(self, period: int) -> int:
        """Frames the ring should hold after a render: the next device period (at least one step) plus
        the lead."""
        return max(int(period), self.step) + self.lead

    @staticmethod
    def deadline(t_callback: float, period: int, fill_before: int, rate: int) -> float:
        """perf_counter time at which the callback that reads the first frame written after
        ``fill_before`` queued frames runs (the last callback ran at ``t_callback``)."""
        j = fill_before // max(1, period) + 1
        return t_callback + j * period / rate

    def wrote(self, slack_s: float) -> None:
        """Record one write that arrived ``slack_s`` seconds before its deadline (negative: late)."""
        if slack_s < self.min_slack_s:
            self.min_slack_s = slack_s

    def update(self, now: float, underruns: int, period: int) -> bool:
        """Close a window when ``window_s`` has passed: adapt ``lead``. Returns whether it changed."""
        if self._t_window is None:
            self._t_window = now
            self._underruns = underruns
            return False
        if now - self._t_window < self.window_s:
            return False
        old = self.lead
        period = max(1, int(period))
        if underruns > self._underruns:
            self.lead = min(self.ceiling, self.lead + max(period, self.min_grow))
            self._calm.clear()
            self.late_windows += 1
        elif math.isfinite(self.min_slack_s):
            self._calm.append(self.min_slack_s)
            if len(self._calm) >= self.calm_windows:
                spare = int((min(self._calm) - self.guard_s) * self.rate)
                if spare >= period and self.lead > self.floor:
                    self.lead = max(self.floor, self.lead - (spare // period) * period)
                self._calm.clear()
        if underruns == self._underruns:
            self.late_windows = 0
        self._t_window = now
        self._underruns = underruns
        self.min_slack_s = math.inf
        if self.lead > old:
            self.grown += 1
        elif self.lead < old:
            self.shrunk += 1
        return self.lead != old

    @property
    def overloaded(self) -> bool:
        """Underruns in every window of the last second although the lead grew each time: the render is
        slower than real time, not jittery."""
        return self.late_windows >= self.calm_windows
