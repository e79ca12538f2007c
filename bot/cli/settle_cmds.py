"""Maintainer commands for flattrs: settle a month, set a supporter's monthly budget."""

from __future__ import annotations

import click

from bot import app
from bot.cli.context import Context
from bot.cli.output import EXIT_PROBLEM, emit_json, fail, money, progress
from escrow.db import transaction
from escrow.flattrs import set_budget
from escrow.ledger import LedgerError, utcnow
from escrow.money import Money, MoneyError
from escrow.selfcheck import LedgerUnsound, around_settlement
from escrow.settlement import DEFAULT_WORKERS, settle

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.command("settle")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to settle.")
@click.option("--batch", default=1000, show_default=True, help="Supporters per transaction.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help=f"Batches at once on PostgreSQL [default: {DEFAULT_WORKERS}; SQLite: 1].",
)
@json_option
@pass_ctx
def settle_cmd(ctx: Context, period: str, batch: int, workers: int | None, as_json: bool) -> None:
    """Settle a month's flattrs: each supporter's budget is split over their shares.

    Only a month that has ended can be settled. Running it again changes nothing; a run
    that was interrupted picks up where it stopped.

    \b
    Example:
      tipjar settle --period 2026-03 --json
    """
    settings = ctx.settings
    engine = ctx.engine
    try:
        with progress(None, f"settling {period}") as bar:
            # Checked before and after, as the worker's settlement is.
            summary, after = around_settlement(
                engine,
                utcnow,
                lambda: settle(
                    engine,
                    app.policy(settings),
                    period,
                    utcnow(),
                    batch=max(1, batch),
                    workers=workers,
                    progress=bar.update,
                    default_budget_minor=settings.min_monthly_budget_minor,
                ),
            )
    except LedgerUnsound as e:
        fail(str(e), EXIT_PROBLEM)
    except LedgerError as e:
        fail(str(e))
    if not after.ok:
        click.echo(
            f"tipjar: the ledger check after the settlement found {after.problems} problem(s):"
            " run `tipjar audit`",
            err=True,
        )
    if as_json:
        emit_json(summary.as_json())
        return
    cur = settings.currency
    if summary.already_settled:
        click.echo(f"{period} was already settled; nothing changed")
    click.echo(
        f"{period}: {summary.supporters_settled} supporters, {summary.shares} shares; "
        f"{money(summary.total_posted_minor, cur)} posted "
        f"(fees {money(summary.total_fees_minor, cur)}), "
        f"{money(summary.total_held_minor, cur)} held; "
        f"{summary.unfunded_shares} shares unfunded, {summary.refused_shares} refused"
    )


@click.command("set-budget")
@click.argument("who")
@click.argument("amount")
@json_option
@pass_ctx
def set_budget_cmd(ctx: Context, who: str, amount: str, as_json: bool) -> None:
    """Set WHO's (@handle or x:ID) monthly flattr budget to AMOUNT.

    The budget is split each month over the creators WHO flattred. It cannot be less
    than MIN_MONTHLY_BUDGET; a supporter who never set one gives that minimum.

    \b
    Example:
      tipjar accounts set-budget @alice 5.00
    """
    settings = ctx.settings
    policy = app.policy(settings)
    identity = ctx.identity(who)
    try:
        value = Money.parse(amount, settings.currency)
        transaction(
            ctx.engine,
            lambda conn: set_budget(
                conn, policy, identity, value, settings.min_monthly_budget, utcnow()
            ),
        )
    except (MoneyError, LedgerError) as e:
        fail(str(e))
    if as_json:
        emit_json(
            {
                "platform": identity.platform,
                "user_id": identity.user_id,
                "handle": identity.handle,
                "monthly_budget_minor": value.minor,
            }
        )
        return
    click.echo(f"monthly budget of {who} set to {value}")


def register(main: click.Group) -> None:
    main.add_command(settle_cmd)
    accounts = main.commands["accounts"]
    assert isinstance(accounts, click.Group)
    accounts.add_command(set_budget_cmd)
