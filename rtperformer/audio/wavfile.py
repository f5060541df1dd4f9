"""Float WAV files that survive long takes and crashes: RF64 past 4 GiB, a header kept current.

:func:`open_wav` opens a libsndfile RF64 writer with auto-downgrade: the file is a plain RIFF/WAVE (with a
JUNK chunk reserving room for the 64-bit sizes) for as long as it stays under 4 GiB, and becomes RF64
when it grows past that, instead of failing or wrapping the 32-bit sizes. :func:`update_header` writes the
current length into the header, so a file cut off by a crash, a SIGKILL or a full disk is readable up to
the last update (the recorder calls it every second).
"""

from __future__ import annotations

import os

import soundfile as sf

SFC_UPDATE_HEADER_NOW = 0x1060  # libsndfile sndfile.h
SFC_RF64_AUTO_DOWNGRADE = 0x1210


WAV_LIMIT = 2**32 - 1 - 4096  # bytes of audio a RIFF/WAVE file can hold (32-bit sizes), less header room


def open_wav(path: str | os.PathLike, samplerate: int, channels: int, subtype: str = "FLOAT",
             frames: int | None = None) -> sf.SoundFile:
    """A :class:`soundfile.SoundFile` writing ``path``: WAV below 4 GiB, RF64 above (see module doc).

    ``frames``: the length when it is known in advance (offline render): a plain WAV when it fits, RF64
    when it does not. Unknown (a live recording): RF64 with auto-downgrade, a WAVE_FORMAT_EXTENSIBLE
    RIFF file until it passes 4 GiB."""
    kw = dict(mode="w", samplerate=int(samplerate), channels=int(channels), subtype=subtype)
    if frames is not None:
        fits = int(frames) * int(channels) * 4 <= WAV_LIMIT
        return sf.SoundFile(str(path), format="WAV" if fits else "RF64", **kw)
    f = sf.SoundFile(str(path), format="RF64", **kw)
    sf._snd.sf_command(f._file, SFC_RF64_AUTO_DOWNGRADE, sf._ffi.NULL, 1)
    return f


def update_header(f: sf.SoundFile) -> None:
    """Write the frames written so far into ``f``'s header (the file is then readable up to here)."""
    sf._snd.sf_command(f._file, SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)


def last_error(f: sf.SoundFile) -> str:
    """libsndfile's own text for the last error on ``f`` (with the system's reason, e.g. "No space left on
    device"), where soundfile's exception only says "System error"."""
    try:
        return sf._ffi.string(sf._snd.sf_strerror(f._file)).decode("utf-8", "replace")
    except Exception:
        return ""
