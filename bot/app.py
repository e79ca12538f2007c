"""The composition root: the one place that builds engines, ledgers and clients.

Nothing in tipjar starts at import time. Commands, the worker and the web app call these
builders with validated `Settings`; tests call them with their own settings and fakes.
"""

from __future__ import annotations

from sqlalchemy import Engine

from bot.config import Settings
from escrow.db import make_engine
from escrow.ledger import Clock, Policy, utcnow
from escrow.service import Ledger


def policy(settings: Settings) -> Policy:
    return Policy(
        currency=settings.currency,
        fee_percent=settings.fee_percent,
        hold_period=settings.hold_period,
    )


def engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def ledger(settings: Settings, eng: Engine | None = None, clock: Clock = utcnow) -> Ledger:
    return Ledger(eng or engine(settings), policy(settings), clock)
