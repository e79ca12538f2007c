"""Real Mastodon answers recorded by Mastodon.py's test suite (vcrpy cassettes in
`../shared/fixtures/mastodon/`), read as (method, uri, status, headers, parsed body)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# ../shared beside the repository (CI, a developer's checkout); TIPJAR_SHARED_DIR elsewhere.
SHARED = Path(
    os.environ.get("TIPJAR_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared"
)
CASSETTES = SHARED / "fixtures" / "mastodon"


def available() -> bool:
    return CASSETTES.is_dir()


@dataclass(frozen=True)
class Recorded:
    method: str
    uri: str
    status: int
    headers: dict[str, str]
    body: Any


@cache
def recorded(name: str) -> tuple[Recorded, ...]:
    data = yaml.safe_load((CASSETTES / f"{name}.yaml").read_text())
    out = []
    for interaction in data["interactions"]:
        req, resp = interaction["request"], interaction["response"]
        text = resp["body"]["string"]
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        headers = {k.lower(): v[0] for k, v in resp["headers"].items()}
        out.append(Recorded(req["method"], req["uri"], resp["status"]["code"], headers, body))
    return tuple(out)


def first(name: str, method: str, path: str) -> Recorded:
    """The first recorded answer in cassette `name` to `method` on a URI containing `path`."""
    return next(r for r in recorded(name) if r.method == method and path in r.uri)
