"""What every page of the web app shares: settings, database, policy, clock, HTTP, sign-in.

Built once by `create_app` and handed to the views, so the views never reach for globals
and tests swap any part (a clock they move, an engine per database, a faked session).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests
from sqlalchemy import Engine

from bot.config import Settings
from bot.platforms import SignIn
from escrow.ledger import Clock, Policy


@dataclass(frozen=True)
class Web:
    settings: Settings
    engine: Engine
    policy: Policy
    clock: Clock
    http: requests.Session
    sign_in: SignIn  # the platform people prove their account with

    def now(self) -> datetime:
        return self.clock()
