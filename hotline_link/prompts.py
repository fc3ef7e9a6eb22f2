"""The lab's spoken prompts: each ``[prompts]`` text synthesized with espeak-ng (Mandarin voice)
into the sound Asterisk plays as ``hotline-link/<name>``, at lab set-up, so that no audio file is
committed. Production admins record the same texts and install them under the same names
(dialplan/README.md, "Prompts").

espeak-ng writes 22,050 Hz WAV; Asterisk's ``wav`` format is 8 kHz, 16-bit, mono. The resampler
below is a windowed-sinc low-pass (cut-off under 4 kHz) evaluated at each output instant: a few
hundred thousand multiply-adds per prompt, done once per text (a prompt whose text did not change
is kept).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import wave
from array import array
from pathlib import Path

RATE = 8000                  # Asterisk's "wav": 8 kHz 16-bit mono
VOICE = "cmn"                # Mandarin (espeak-ng-data)
SPEED = 190                  # words per minute: a short, clear announcement
TAPS = 16                    # sinc lobes each side
CUTOFF = 3600.0              # Hz, under the 4 kHz Nyquist limit of 8 kHz audio
DIR = "hotline-link"         # the prompts' folder in the PBX's sounds directory


class PromptError(Exception):
    pass


def resample(samples: array, rate_in: int, rate_out: int = RATE) -> array:
    ratio = rate_in / rate_out
    fc = min(CUTOFF, rate_out / 2) / rate_in          # cut-off, in cycles per input sample
    n_out = int(len(samples) / ratio)
    out = array("h", bytes(2 * n_out))
    last = len(samples) - 1
    for n in range(n_out):
        t = n * ratio
        centre = int(t)
        acc = 0.0
        for i in range(max(0, centre - TAPS + 1), min(last, centre + TAPS) + 1):
            d = t - i
            if d == 0:
                h = 2 * fc
            else:
                h = math.sin(2 * math.pi * fc * d) / (math.pi * d)
            # Hann window over the kernel's span.
            h *= 0.5 + 0.5 * math.cos(math.pi * d / TAPS)
            acc += samples[i] * h
        out[n] = max(-32768, min(32767, round(acc)))
    return out


# Synthesized prompts by the digest of their text, shared by every lab on the machine (outside
# the repository, like the Asterisk root file system): a fresh lab copies instead of synthesizing.
CACHE = Path(os.environ.get("HOTLINE_PROMPT_CACHE", "/var/cache/hotline-link/prompts"))


def synthesize(text: str, out: Path) -> bool:
    """Write ``out`` (8 kHz WAV) from ``text`` unless it holds that text already; True if it
    was written."""
    digest = hashlib.sha1(f"{VOICE}:{SPEED}:{text}".encode()).hexdigest()
    stamp = out.with_suffix(".sha1")
    if out.exists() and stamp.exists() and stamp.read_text() == digest:
        return False
    cached = CACHE / f"{digest}.wav"
    if cached.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out)
        stamp.write_text(digest)
        return True
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise PromptError("espeak-ng is not installed (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        done = subprocess.run([espeak, "-v", VOICE, "-s", str(SPEED), "-w", str(raw), text],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not raw.exists():
            raise PromptError(f"espeak-ng failed on {text!r}: {done.stderr.strip()}")
        with wave.open(str(raw), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise PromptError("espeak-ng wrote other than 16-bit mono audio")
            rate = w.getframerate()
            samples = array("h", w.readframes(w.getnframes()))
    audio = resample(samples, rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    with wave.open(str(tmp_out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.tobytes())
    tmp_out.replace(out)
    stamp.write_text(digest)
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, CACHE / f".{digest}.tmp")
        (CACHE / f".{digest}.tmp").replace(cached)
    except OSError:
        pass                      # no cache (read-only, no rights): synthesized again next time
    return True


def build(prompts: dict[str, str], sounds_dir: Path) -> list[Path]:
    """Every prompt into ``sounds_dir/hotline-link/<name>.wav``; the files written."""
    written = []
    for name, text in prompts.items():
        path = sounds_dir / DIR / f"{name}.wav"
        if synthesize(text, path):
            written.append(path)
    return written


def media(name: str) -> str:
    """What ARI plays for the prompt ``name``."""
    return f"sound:{DIR}/{name}"
