"""`tipjar costs`: what the bot read and posted per day, and what X will bill for it."""

from __future__ import annotations

import click

from bot.cli.context import Context
from bot.cli.output import emit_json, table
from bot.costs import format_usd, usage
from escrow.ledger import utcnow

pass_ctx = click.make_pass_decorator(Context)


@click.command("costs")
@click.option(
    "--days",
    default=7,
    show_default=True,
    type=click.IntRange(1, 366),
    help="How many days back, today included.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_ctx
def costs(ctx: Context, days: int, as_json: bool) -> None:
    """Reads, posts and the estimated X bill per UTC day, newest first.

    Spend is estimated from X_PRICE_* and capped by X_DAILY_BUDGET; in JSON it is integer
    micro-dollars (`spend_usd_micros`: 1,000,000 = 1 USD). `deferred` posts waited for the
    next day because the cap was reached; `dropped` error replies would have come too late.

    \b
    Example:
      tipjar costs
      tipjar costs --days 30 --json
    """
    settings = ctx.settings
    with ctx.engine.connect() as conn:
        rows = usage(conn, days, utcnow())
    if as_json:
        emit_json(
            {
                "daily_budget_usd_micros": settings.x_daily_budget_usd_micros,
                "days": [r.to_json() for r in rows],
            }
        )
        return
    click.echo(
        table(
            ["day", "reads", "posts", "with link", "spend (est.)", "deferred", "dropped"],
            [
                (
                    r.day,
                    r.reads,
                    r.posts,
                    r.posts_with_link,
                    format_usd(r.spend_usd_micros),
                    r.deferred,
                    r.dropped,
                )
                for r in rows
            ],
            right=(1, 2, 3, 4, 5, 6),
        )
    )
    click.echo(f"\ndaily budget {format_usd(settings.x_daily_budget_usd_micros)} (X_DAILY_BUDGET)")


def register(main: click.Group) -> None:
    main.add_command(costs)
