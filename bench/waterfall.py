"""The latency waterfall: one note-on -> first sound split into its stages, each measured in the same run.

Clocks: the probe (bench/latency.py, JACK-Client) logs the recording frame at the start of every JACK cycle
with its ``perf_counter`` (CLOCK_MONOTONIC, the same clock in every process), so any stamp the server
takes maps to a recording frame by interpolation. ``rtperformer serve --latency-log`` writes, per note-on,
the device frame it was stamped with, where its audio begins (``at``), and the perf_counter of its arrival
and of the start and end of the step that applied it; and, per audio callback, the device frame of its
first sample and its perf_counter. The callback times map device frames to recording frames (the probe
records a PortAudio block in the cycle that produced it).

Stages of one note (ms, from the event's frame ``e`` in the recording):

==========  ===========================================================================================
midi        e -> the server's MIDI callback (JACK MIDI delivery, rtmidi, the GIL)
wait        arrival -> the start of the step that applies it (the next device callback + render delay)
compute     that step's compute (all instruments)
ring        step end -> the callback that reads the note's first frame (the queued lead)
period      that frame's place inside the device period it is played in
declared    the chain's declared delay (model lookahead + phase lookahead + the streaming iSTFT's
            n_fft/2 - trim hops: ``Voice.delay_samples``)
rise40      from there to the first sound at -40 dB (the synthesis window's taper + the model's attack)
rise10      -40 dB -> 10 % of the note's level (how fast the attack rises)
==========  ===========================================================================================

``residual`` = measured first sound - the sum of the stages up to rise40: the disagreement of the two clock
mappings (a few hundredths of a ms without xruns).

Oracle (``oracle_rise``): the same audio stage (magnitude, RTPGHI, streaming iSTFT with the served trim)
fed the true spectrogram frames of FluidSynth notes (FluidR3 violin), offline: its rise40/rise10 is the
floor of our representation and synthesis; added to the measured live stages it is the oracle row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STAGES = ("midi", "wait", "compute", "ring", "period", "declared", "rise40", "rise10")
COLORS = ("#4c72b0", "#8172b2", "#c44e52", "#dd8452", "#ccb974", "#64b5cd", "#55a868", "#a1d99b")


def _to_frames(played: np.ndarray, t: np.ndarray) -> np.ndarray:
    """perf_counter times -> recording frames by interpolating the recorded cycles ((n, 2): frame, time)."""
    return np.interp(t, played[:, 1], played[:, 0])


def block_cycles(played: np.ndarray, callbacks: np.ndarray) -> np.ndarray:
    """Index into ``played`` of the cycle recording each callback's block: the first that starts at or
    after the callback (len(played) when none did)."""
    return np.searchsorted(played[:, 1], callbacks[:, 1])


def device_to_recording(played: np.ndarray, callbacks: np.ndarray) -> tuple[float, np.ndarray]:
    """Offset (recording frame - device frame) of the server's blocks. Returns (median offset,
    per-callback offsets)."""
    idx = block_cycles(played, callbacks)
    ok = idx < len(played)
    offs = played[idx[ok], 0] - callbacks[ok, 0]
    return float(np.median(offs)), offs


def stages_for(marks: list[tuple[int, int, str]], log: dict, cycles: np.ndarray, x: np.ndarray, rate: int,
               detect, first_fraction: float) -> list[dict]:
    """Per event (``marks``: (event frame, release frame, kind) in the recording), its stages in ms, or
    nothing when the event has no logged note-on or no detectable onset."""
    on = np.asarray(log["onsets"], np.float64).reshape(-1, len(log["fields"]))
    cbs = np.asarray(log["callbacks"], np.float64).reshape(-1, 2)
    if not len(on) or not len(cbs):
        return []
    played = cycles[cycles[:, 0] > -1e9]  # the cycles since recording started
    offset, _ = device_to_recording(played, cbs)
    block_rec = played[np.minimum(block_cycles(played, cbs), len(played) - 1), 0]  # per callback
    r_arr = _to_frames(played, on[:, 4])
    r_end = _to_frames(played, on[:, 6])
    cb_rec = _to_frames(played, cbs[:, 1])
    hop_out = log["hop"] * rate / log["model_rate"]
    frame_delay = log["delay_frames"] * hop_out  # what ``at`` adds to the onset frame's place
    declared = log["declared_samples"] * rate / log["model_rate"]
    ms = 1e3 / rate
    out = []
    for e, off, _kind in marks:
        # a cycle's MIDI is delivered at its start: up to a period before the event's own frame
        hit = np.flatnonzero((r_arr >= e - log["period"] - rate * 0.002) & (r_arr < e + rate * 0.1))
        if not len(hit):
            continue
        i = hit[0]
        first, _ = detect(x, e, off, rate, first_fraction)
        ten, _ = detect(x, e, off, rate)
        if first is None or ten is None:
            continue
        at0 = on[i, 1] - frame_delay  # device frame where the note's onset frame is played
        k = np.searchsorted(cbs[:, 0], at0, side="right") - 1  # the callback whose block holds it
        if k < 0:
            continue
        st = {
            "midi": (r_arr[i] - e) * ms,
            "wait": (on[i, 5] - on[i, 4]) * 1e3,
            "compute": (on[i, 6] - on[i, 5]) * 1e3,
            "ring": (block_rec[k] - r_end[i]) * ms,
            "period": (at0 - cbs[k, 0]) * ms,
            "declared": declared * ms,
            "rise40": (first - (at0 + declared + offset)) * ms,
            "rise10": (ten - first) * ms,
        }
        st["first_sound"] = (first - e) * ms
        st["onset10"] = (ten - e) * ms
        st["residual"] = st["first_sound"] - sum(st[s] for s in STAGES[:-1])
        st["cb_to_block_rec"] = (block_rec[k] - cb_rec[k]) * ms
        out.append(st)
    return out


def summarize_stages(rows: list[dict]) -> dict:
    """Median of every stage and total over the events (and p99 of the totals)."""
    if not rows:
        return {"n": 0}
    keys = list(STAGES) + ["first_sound", "onset10", "residual"]
    res = {k: float(np.median([r[k] for r in rows])) for k in keys}
    res["first_sound_p99"] = float(np.percentile([r["first_sound"] for r in rows], 99))
    res["n"] = len(rows)
    res["median_stage_sum_first"] = float(sum(res[s] for s in STAGES[:-1]))
    return res


def oracle_rise(trim_hops: int | None, model: str = "violin", pitches=(60, 64, 67, 71, 74, 77, 81),
                velocity: int = 100, rate: int = 48000, detect=None, first_fraction: float = 0.01) -> dict:
    """The audio stage fed true frames: FluidR3 violin notes -> log1p-power features -> the served
    AudioStage (live: delays kept; ``trim_hops`` None: serve's default) -> audio. Returns median rise40/rise10 after the onset frame + declared
    delay, and FluidSynth's own first sound / 10 % after the note (its render, no JACK)."""
    import fluidsynth

    from rtperformer.dsp.features import log_power
    from rtperformer.model.checkpoint import load_model
    from rtperformer.voice.audio_stage import AudioStage

    from rtperformer.config import Config

    _, mcfg, _ = load_model(model)
    # serve's settings are Config()'s plus the served overlay, never the model's stored serve section
    trim = int(Config().serve.istft_trim_hops if trim_hops is None else trim_hops)
    a = mcfg.audio
    fs = fluidsynth.Synth(samplerate=float(rate), gain=0.5)
    fs.setting("synth.reverb.active", 0)
    fs.setting("synth.chorus.active", 0)
    sfid = fs.sfload("/usr/share/sounds/sf2/FluidR3_GM.sf2")
    fs.program_select(0, sfid, 0, 40)
    lead = 8 * a.hop  # note-on on a frame boundary, 8 frames in
    n = int(0.4 * rate)
    rows = {"oracle_rise40": [], "oracle_rise10": [], "fluidsynth_first": [], "fluidsynth_10": []}
    for p in pitches:
        fs.get_samples(rate // 2)  # let the previous note die
        fs.noteon(0, p, velocity)
        buf = np.asarray(fs.get_samples(n - lead), np.float32).reshape(-1, 2)[:, 0]
        fs.noteoff(0, p)
        raw = np.concatenate([np.zeros(lead, np.float32), buf])
        stage = AudioStage(a, mcfg.render, trim_hops=trim)
        feats = log_power(raw, a)
        y = np.concatenate([stage.push(feats[:, j:j + 1]).copy() for j in range(feats.shape[1])])
        start = lead + stage.delay_samples  # onset frame + declared delay, as live
        f40, _ = detect(y, start, len(y), rate, first_fraction)
        f10, _ = detect(y, start, len(y), rate)
        r40, _ = detect(raw, lead, len(raw), rate, first_fraction)
        r10, _ = detect(raw, lead, len(raw), rate)
        if None in (f40, f10, r40, r10):
            continue
        rows["oracle_rise40"].append((f40 - start) * 1e3 / rate)
        rows["oracle_rise10"].append((f10 - f40) * 1e3 / rate)
        rows["fluidsynth_first"].append((r40 - lead) * 1e3 / rate)
        rows["fluidsynth_10"].append((r10 - lead) * 1e3 / rate)
    fs.delete()
    return {k: float(np.median(v)) if v else None for k, v in rows.items()} | {"notes": len(rows["oracle_rise40"])}


def table(results: dict) -> str:
    """Markdown table: rows rtperformer / oracle / fluidsynth, columns the stages (medians, ms)."""
    head = "| system | " + " | ".join(STAGES) + " | first sound (sum) | 10 % onset | measured first / 10 % |"
    lines = [head, "|" + "---|" * (len(STAGES) + 4)]
    for row in results.get("waterfall_rows", []):
        vals = " | ".join("-" if row.get(s) is None else f"{row[s]:.1f}" for s in STAGES)
        tot = "-" if row.get("sum_first") is None else f"{row['sum_first']:.1f}"
        ten = "-" if row.get("sum_10") is None else f"{row['sum_10']:.1f}"
        meas = row.get("measured", "-")
        lines.append(f"| {row['system']} | {vals} | {tot} | {ten} | {meas} |")
    return "\n".join(lines)


def rows_for_plot(results: dict) -> list[dict]:
    """Waterfall rows: rtperformer (each measured stage), oracle (live stages + the oracle's rises),
    fluidsynth (one bar: MIDI + synthesis in one callback; its rise from its own offline render)."""
    out = []
    for s in results["systems"]:
        wf = s.get("waterfall")
        if not wf or not wf.get("n"):
            continue
        row = {"system": s["system"], **{k: wf[k] for k in STAGES}}
        row["sum_first"] = sum(wf[k] for k in STAGES[:-1])
        row["sum_10"] = row["sum_first"] + wf["rise10"]
        row["measured"] = f"{s['first_sound']['median_ms']:.1f} / {s['median_ms']:.1f}"
        out.append(row)
        orc = results.get("oracle")
        if orc and orc.get("oracle_rise40") is not None:
            o = {"system": "oracle (true frames)", **{k: wf[k] for k in STAGES[:-2]},
                 "rise40": orc["oracle_rise40"], "rise10": orc["oracle_rise10"]}
            o["sum_first"] = sum(o[k] for k in STAGES[:-1])
            o["sum_10"] = o["sum_first"] + o["rise10"]
            o["measured"] = "-"
            out.append(o)
    fs = next((s for s in results["systems"] if s["system"] == "fluidsynth" and s.get("n")), None)
    if fs:
        orc = results.get("oracle") or {}
        first = fs["first_sound"]["median_ms"]
        own = orc.get("fluidsynth_first") or 0.0
        row = {k: None for k in STAGES}
        row.update({"system": "fluidsynth", "midi": first - own, "rise40": own,
                    "rise10": fs["median_ms"] - first, "sum_first": first, "sum_10": fs["median_ms"],
                    "measured": f"{first:.1f} / {fs['median_ms']:.1f}"})
        out.append(row)
    return out


def plot(results: dict, path: Path, save_png) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("waterfall_rows", [])
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.8 * max(1, len(rows))))
    seen = set()
    for y, row in enumerate(rows):
        left = 0.0
        for k, color in zip(STAGES, COLORS):
            v = row.get(k)
            if v is None:
                continue
            if v < 0:  # JACK hands a cycle's MIDI over at its start: before the event's own frame
                left += v
                continue
            ax.barh(y, v, left=left, color=color, edgecolor="white", label=None if k in seen else k)
            seen.add(k)
            if v >= 1.5:
                ax.text(left + v / 2, y, f"{v:.1f}", ha="center", va="center", fontsize=7)
            left += v
    ax.axvline(0, color="k", ls=":", lw=0.8)
    ax.text(0, len(rows) - 0.45, " note-on's frame (bars left of it: MIDI handed over at the cycle start)",
            fontsize=7, va="bottom")
    ax.set_yticks(range(len(rows)), [r["system"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms from the note-on on the wire (medians; the sum to rise40 is the first sound at -40 dB)")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.set_title("latency waterfall, JACK dummy 48 kHz / 256, one run")
    return save_png(fig, path)
