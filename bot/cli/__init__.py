"""The `tipjar` command: the maintainer's tools, the worker and the web app.

Every command that prints data takes `--json` (money as integer minor units in fields
ending `_minor`). Configuration is read once, when a command first needs it; a broken
configuration ends the command with every problem listed and exit code 2.
"""

from __future__ import annotations

from typing import IO, Any

import click
from click.exceptions import NoArgsIsHelpError
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.cli import (
    cost_cmds,
    demo_cmds,
    funds_cmds,
    ledger_cmds,
    ops_cmds,
    payout_cmds,
    settle_cmds,
    web_cmds,
    x_cmds,
)
from bot.cli.context import Context
from bot.cli.output import fail
from bot.config import mask_database_url


class _OneLineUsageError(click.UsageError):
    """A usage error told on one line of stderr, like every other tipjar error."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"tipjar: {self.format_message()}{hint}", err=True)


class _Main(click.Group):
    """The `tipjar` group: usage errors of every command exit 2 with a one-line reason."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _OneLineUsageError(e.format_message(), e.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NoArgsIsHelpError, _OneLineUsageError):
            raise
        except click.UsageError as e:
            raise _OneLineUsageError(e.format_message(), e.ctx) from None
        except (OperationalError, InterfaceError) as e:
            # Any command, `db upgrade` included: one line naming the database, no traceback.
            where = mask_database_url(ctx.obj.settings.database_url) if ctx.obj else "?"
            reason = str(e.orig if e.orig is not None else e).strip().splitlines() or ["?"]
            fail(f"cannot reach the database {where}: {reason[0]}")


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="tipjar")
@click.pass_context
def main(ctx: click.Context) -> None:
    """tipjar: tips by tweet, held in escrow until the creator claims them.

    \b
    Example:
      tipjar db upgrade
      tipjar funds deposit @alice 10.00 --reference bank-2026-0042
      tipjar escrow balances
    """
    ctx.obj = Context()


for area in (
    ledger_cmds,
    funds_cmds,
    payout_cmds,
    settle_cmds,
    x_cmds,
    web_cmds,
    demo_cmds,
    cost_cmds,
    ops_cmds,
):
    area.register(main)
