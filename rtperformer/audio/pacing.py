"""How far ahead of the sound card the render thread stays: one device period plus a measured lead.

The render thread is woken by every audio callback (:meth:`rtperformer.audio.output.AudioOutput.wait_callback`)
and then renders until the output ring holds ``target(period) = period + lead`` frames: the block the
device pulls next, from the freshest MIDI, plus ``lead`` frames of margin. A note-on therefore reaches
the next device period whenever the render is in time, whatever the period (64 ... 2048).

``lead`` is not a guess: it starts at ``floor`` (``serve.lead_samples``) and follows what is measured.

- Slack: after each write the render thread reports how long before its deadline the new audio arrived
  (the deadline is the callback that will read its first frame). The lowest slack of a window says how
  much earlier the audio could have been queued: when even that would have been in time one whole period
  later, ``lead`` shrinks by that many periods (never below ``floor``).
- Underruns: a window with an underrun grows ``lead`` by one period (never above ``ceiling``).

Windows are ``window_s`` long (0.25 s), so after an overload (a CPU hog, a burst of notes) the margin it
needed is given back within one window of the load ending, and a machine whose render jitters keeps just
the margin that jitter needs. Being late is never answered with silence: late audio is played late
(rtperformer/audio/ring.py) and the lead grows so the next blocks are not late.

Delay this stage adds to a note: the wait for the next device period (0..period) plus ``lead``; the
status line shows ``lead`` and the ring fill.
"""

from __future__ import annotations

import math


class Pacer:
    """Render-ahead target for one output.

    ``rate``: device frames per second; ``floor`` / ``ceiling``: bounds of ``lead`` in frames;
    ``guard_s``: slack kept on top of a shrunk lead (scheduling noise of the wake-up).
    """

    def __init__(self, rate: int, floor: int = 0, ceiling: int = 4096, window_s: float = 0.25,
                 guard_s: float = 0.0005):
        if floor < 0 or ceiling < floor:
            raise ValueError(f"lead bounds must satisfy 0 <= floor <= ceiling (got {floor}, {ceiling})")
        self.rate = int(rate)
        self.floor = int(floor)
        self.ceiling = int(ceiling)
        self.window_s = float(window_s)
        self.guard_s = float(guard_s)
        self.lead = self.floor
        self.min_slack_s = math.inf
        self._t_window = None
        self._underruns = 0
        self.grown = 0  # windows that grew the lead (underruns)
        self.shrunk = 0  # windows that shrank it

    def target(self, period: int) -> int:
        """Frames the ring should hold after a render: the next device period plus the lead."""
        return int(period) + self.lead

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
            self.lead = min(self.ceiling, self.lead + period)
        elif math.isfinite(self.min_slack_s):
            spare = int((self.min_slack_s - self.guard_s) * self.rate)
            if spare >= period:
                self.lead = max(self.floor, self.lead - (spare // period) * period)
        self._t_window = now
        self._underruns = underruns
        self.min_slack_s = math.inf
        if self.lead > old:
            self.grown += 1
        elif self.lead < old:
            self.shrunk += 1
        return self.lead != old
