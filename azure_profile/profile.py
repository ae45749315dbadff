"""The ``azure`` profile provider, registered under the ``reelhouse.profiles`` entry point."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROFILE_FILE = Path(__file__).resolve().parent / "profile.toml"


class AzureProfileProvider:
    """Reads ``profile.toml``; secrets stay references until run time."""

    def raw_profile(self) -> Mapping[str, Any]:
        with PROFILE_FILE.open("rb") as handle:
            return tomllib.load(handle)


PROVIDER = AzureProfileProvider()
