"""Every component's configuration section, for the tools that read them all: the CLI's config
check and lab commands, the lab itself, the tests and the benchmarks.

The processes ask only for their own: the service ``hotline_link.settings.load`` (the service's
sections), the sidecar ``sidecar.settings.load`` (the service's and its own). This module may
import every component's parser; the service's modules never import it (import-linter).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sidecar.settings import SECTION as SIDECAR

from .lab_settings import SECTION as LAB
from .settings import Settings, load as _load

ALL = (SIDECAR, LAB)


def load(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
         secrets: bool = True, lab: bool = False) -> Settings:
    """The service's settings with ``.sidecar`` and, when the lab is in use (``lab=True``, or a
    [lab] table in the file or the environment), ``.lab``; every section validated."""
    return _load(path, env=env, secrets=secrets, also=ALL, lab=lab)
