"""`tipjar funds list`: the maintainer's view of money in by card and of what it took back."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from bot.cli.context import Context
from bot.cli.ledger_cmds import funds
from bot.cli.output import emit_json, fail, money, table, when
from escrow.funding_report import funds_list

pass_ctx = click.make_pass_decorator(Context)

STATES = (
    "pending",
    "paid",
    "failed",
    "problem",
    "active",
    "canceling",
    "canceled",
    "waiting",
    "taken",
    "open",
    "won",
    "lost",
    "forgiven",
)


@funds.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_ctx
def funds_list_cmd(ctx: Context, state: str | None, as_json: bool) -> None:
    """Card top-ups, subscriptions, refunds, disputes and debts, newest first.

    \b
    Example:
      tipjar funds list
      tipjar funds list --state problem --json
    """
    try:
        with ctx.engine.connect() as conn:
            lines = funds_list(conn, state)
    except SQLAlchemyError as e:  # a database that is not there or not migrated
        fail(f"cannot read the funds: {type(e).__name__}")
    code = ctx.settings.currency
    if as_json:
        emit_json({"currency": code, "items": [line.as_json() for line in lines]})
        return
    if not lines:
        click.echo("nothing yet" + (f" in state {state}" if state else ""))
        return
    rows = [
        (
            line.kind,
            line.id,
            line.who,
            money(line.amount_minor, code),
            line.state,
            line.reference or "-",
            when(line.created_at),
            line.problem or "",
        )
        for line in lines
    ]
    click.echo(
        table(["kind", "id", "who", "amount", "state", "reference", "when", "problem"], rows, [3])
    )


def register(main: click.Group) -> None:
    """`list` joins the `funds` group that ledger_cmds registers."""
    del main
