"""What every CLI command shares: settings, the database, the ledger, identity look-up.

Built lazily, so `tipjar --help` needs no configuration and no database.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from bot import app
from bot.cli.output import fail
from bot.config import ConfigError, Settings, load_settings
from escrow.ledger import Identity, LedgerError, find_by_handle
from escrow.migrate import is_current
from escrow.service import Ledger


class Context:
    @cached_property
    def settings(self) -> Settings:
        try:
            return load_settings()
        except ConfigError as e:
            for problem in e.problems:
                click.echo(f"tipjar: {problem}", err=True)
            fail("the configuration has problems (see above); fix .env or the environment")

    @cached_property
    def raw_engine(self) -> Engine:
        return app.engine(self.settings)

    @cached_property
    def engine(self) -> Engine:
        """The database, checked to be reachable and at the newest schema."""
        eng = self.raw_engine
        if _sqlite_file_missing(eng):  # connecting would create an empty file: say so instead
            fail(f"no database at {eng.url.database}: run `tipjar db upgrade` first")
        try:
            current = is_current(eng)
        except OperationalError as e:
            fail(f"cannot reach the database: {str(e.orig).strip().splitlines()[0]}")
        if not current:
            fail("the database is not at the newest schema: run `tipjar db upgrade` first")
        return eng

    @cached_property
    def ledger(self) -> Ledger:
        return app.ledger(self.settings, self.engine)

    def identity(self, text: str) -> Identity:
        """An account as a maintainer names it, on either platform.

        `x:ID` and `mastodon:user@domain` are taken as given; `@user@domain` is a Mastodon
        address (lowercased: addresses are the ids). `@handle` is whoever holds that X
        handle now: handles are recycled after a rename, so with X configured the handle is
        always resolved on X (its answer is the account's immutable id). The local snapshot
        answers only when X is not configured, or cannot be reached, and then with a
        warning naming the stored id.
        """
        text = text.strip()
        mastodon = _mastodon_identity(text)
        if mastodon is not None:
            return mastodon
        if not text.startswith("@"):
            try:
                return Identity.parse(text)
            except LedgerError as e:
                fail(f"{e}; or give @handle, @user@domain or mastodon:user@domain")
        handle = text[1:]
        on_x, x_error = self._look_up_on_x(handle)
        if on_x is not None:
            return on_x
        if x_error is None and self._x_configured:
            fail(f"{text} is not known on X; give the account as x:ID (the numeric id)")
        with self.engine.connect() as conn:
            row = find_by_handle(conn, handle)
        if row is None:
            reason = f" and X could not be asked: {x_error}" if x_error else ""
            fail(f"{text} is not known here{reason}; give the account as x:ID (the numeric id)")
        if x_error is not None:
            click.echo(
                f"tipjar: warning: X could not be asked ({x_error}); using the stored"
                f" {text} = {row.platform}:{row.platform_user_id}, which may be out of date",
                err=True,
            )
        return Identity(row.platform, row.platform_user_id, row.handle)

    @property
    def _x_configured(self) -> bool:
        from bot.platforms.x.wiring import x_reads_configured

        return x_reads_configured(self.settings)

    def _look_up_on_x(self, handle: str) -> tuple[Identity | None, str | None]:
        """(the account X names `handle` now, None) or (None, why X could not be asked)."""
        from bot.platforms import PlatformError
        from bot.platforms.x.wiring import build_x_api

        if not self._x_configured:
            return None, None
        try:
            users = build_x_api(self.settings, max_retries=1).lookup_users([handle])
        except PlatformError as e:
            return None, str(e)
        user = users.get(handle.casefold())
        found = Identity(user.platform, user.user_id, user.handle) if user is not None else None
        return found, None


def _mastodon_identity(text: str) -> Identity | None:
    """`mastodon:bob@other.social` or `@bob@other.social` (None: not a Mastodon address)."""
    from bot.platforms.mastodon.text import MAX_ADDRESS_LENGTH, parse_address

    if text.lower().startswith("mastodon:"):
        parsed = parse_address(text[len("mastodon:") :])
        if parsed is None:
            fail(f"{text!r} is not a Mastodon identity like mastodon:bob@example.social")
    elif text.startswith("@") and text.count("@") == 2:
        parsed = parse_address(text)
        if parsed is None:
            fail(f"{text!r} is not a Mastodon address like @bob@example.social")
    else:
        return None
    address = "@".join(parsed)
    if len(address) > MAX_ADDRESS_LENGTH:
        fail(f"{text!r} is longer than tipjar keeps Mastodon addresses")
    return Identity("mastodon", address, address)


def _sqlite_file_missing(engine: Engine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
