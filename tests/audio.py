"""Is a tone in this audio? The tests' proof that two parties hear each other.

A phone plays a sine tone of its own frequency into a call; the other party's received audio is
checked for that frequency with the Goertzel algorithm (one DFT bin, cheap enough to run on every
20 ms frame in the phone's process). Signalling, DTMF included, proves nothing about media: DTMF
crosses the trunk as SIP INFO, so one-way audio would pass a DTMF check.

The frequencies avoid the DTMF rows and columns (697-941 Hz, 1209-1633 Hz) and each other's
Goertzel side lobes over a 20 ms frame (50 Hz bins at any rate), and stay well inside G.711's band.
"""

from __future__ import annotations

import math
import wave
from array import array
from pathlib import Path

# One per phone, assigned in the order phones are made (a test has at most a handful).
TONES_HZ = (450, 1100, 1900, 2500, 600, 2800, 1000, 3100)
# Share of a frame's energy in the tone's bin above which the tone counts as present: a pure
# tone gives ~1, one of two equally loud tones ~0.5, speech-like noise or silence ~0.
SHARE = 0.2
# Quieter than this (RMS, 16-bit) is silence whatever its spectrum.
MIN_RMS = 200.0


def tone_share(samples: array | list[int], rate: int, hz: float) -> float:
    """The share of ``samples``' energy at ``hz`` (0..~1), 0.0 for silence."""
    n = len(samples)
    if n == 0:
        return 0.0
    energy = math.fsum(s * s for s in samples)
    if math.sqrt(energy / n) < MIN_RMS:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return power / (n / 2.0 * energy)


# The "frequency" that stands for speech in a phone's listen command: any loud audio that is
# not a tone (a spoken prompt, not ringback or a phone's test tone).
SPEECH = -1
# Tones a caller may hear besides speech: the lab's ringing tone (indications.conf, cn: 450 Hz)
# and the phones' own test tones.
NOT_SPEECH_HZ = (450, *TONES_HZ)


def is_speech(samples: array | list[int], rate: int) -> bool:
    """Loud audio whose energy is in no single tone: a voice, not a tone or silence."""
    n = len(samples)
    if n == 0 or math.sqrt(math.fsum(s * s for s in samples) / n) < MIN_RMS:
        return False
    return all(tone_share(samples, rate, hz) < SHARE for hz in NOT_SPEECH_HZ)


def wav_has_tone(path: Path, hz: float, frame_ms: int = 20, frames: int = 5) -> bool:
    """Whether the 16-bit mono WAV at ``path`` holds ``hz`` in at least ``frames`` frames."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: not 16-bit mono ({wav.getsampwidth() * 8} bit, "
                             f"{wav.getnchannels()} channels)")
        rate = wav.getframerate()
        data = array("h", wav.readframes(wav.getnframes()))
    step = rate * frame_ms // 1000
    hits = sum(1 for i in range(0, len(data) - step + 1, step)
               if tone_share(data[i:i + step], rate, hz) >= SHARE)
    return hits >= frames
