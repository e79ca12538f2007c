"""Maintainer commands on the money: configuration, schema, deposits, accounts, escrow, audit."""

from __future__ import annotations

from dataclasses import replace

import click

from bot.cli.context import Context
from bot.cli.output import EXIT_PROBLEM, EXIT_USAGE, emit_json, fail, money, progress, table, when
from bot.config import ConfigError, load_settings
from escrow import selfcheck
from escrow.db import transaction
from escrow.ledger import LedgerError, utcnow
from escrow.migrate import current_revision, head_revision, upgrade
from escrow.money import Money, MoneyError
from escrow.payouts import PayoutTotals
from escrow.payouts import totals as payout_totals
from escrow.pending_flattrs import count_pending_flattrs
from escrow.reports import AccountView, holds_for

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.command("check-config")
@json_option
def check_config(as_json: bool) -> None:
    """Check every configuration key at once; exit 2 listing each problem.

    Secrets are shown only as set or not set.

    \b
    Example:
      tipjar check-config
      tipjar check-config --json
    """
    try:
        settings = load_settings()
    except ConfigError as e:
        if as_json:
            emit_json({"ok": False, "problems": e.problems, "settings": None})
        for problem in e.problems:
            click.echo(f"problem: {problem}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    problems = settings.live_problems()
    if as_json:
        emit_json(
            {
                "ok": not problems,
                "problems": problems,
                "settings": settings.redacted(),
                "topups": settings.topups_enabled,
                "payouts": settings.payout_method,
            }
        )
    else:
        shown = settings.redacted()
        width = max(map(len, shown))
        for key, value in shown.items():
            click.echo(f"{key:{width}} {value}")
        click.echo(f"\n{settings.payments_status()}")
        click.echo(settings.payouts_status())
    if problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        raise SystemExit(EXIT_USAGE)
    if not as_json:
        click.echo("\nconfiguration OK")


@click.group("db")
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Bring the database to the newest schema (safe to run again).

    \b
    Example:
      DATABASE_URL=postgresql://localhost/tipjar tipjar db upgrade
    """
    before = current_revision(ctx.raw_engine)
    upgrade(ctx.raw_engine)
    after = head_revision()
    if before == after:
        click.echo(f"database already at {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@click.group("funds")
def funds() -> None:
    """Money coming in."""


@funds.command("deposit")
@click.argument("who")
@click.argument("amount")
@click.option("--reference", required=True, help="The payment's own id; a repeat is ignored.")
@json_option
@pass_ctx
def funds_deposit(ctx: Context, who: str, amount: str, reference: str, as_json: bool) -> None:
    """Credit AMOUNT to WHO (@handle or x:ID), once per --reference.

    \b
    Example:
      tipjar funds deposit @alice 10.00 --reference bank-2026-0042
    """
    code = ctx.settings.currency
    try:
        value = Money.parse(amount, code)
        result = ctx.ledger.deposit(ctx.identity(who), value, reference)
    except (MoneyError, LedgerError) as e:
        fail(str(e))
    if as_json:
        emit_json(
            {
                "reference": result.reference,
                "amount_minor": result.amount.minor,
                "available_minor": result.available.minor,
                "replayed": result.replayed,
            }
        )
        return
    verb = "was already recorded" if result.replayed else "recorded"
    click.echo(f"deposit {reference} of {value} for {who} {verb}; available now {result.available}")


@click.group("accounts")
def accounts() -> None:
    """Supporters' and creators' accounts."""


def _account_json(view: AccountView, pending_flattrs: int, paid: PayoutTotals) -> dict[str, object]:
    return {
        "platform": view.platform,
        "user_id": view.user_id,
        "handle": view.handle,
        "status": view.status,
        "available_minor": view.available_minor,
        "reserved_minor": view.reserved_minor,
        "held_for_minor": view.held_for_minor,
        "pending_flattrs": pending_flattrs,
        "paid_out_minor": paid.paid_out_minor,
        "in_payout_minor": paid.in_payout_minor,
    }


@accounts.command("show")
@click.argument("who")
@json_option
@pass_ctx
def accounts_show(ctx: Context, who: str, as_json: bool) -> None:
    """Show one account: available, reserved in its tips, held for it, paid out, in payout.

    \b
    Example:
      tipjar accounts show @alice --json
    """
    view = ctx.ledger.account(ctx.identity(who))
    if view is None:
        fail(f"{who} has no account yet", EXIT_PROBLEM)
    with ctx.engine.connect() as conn:
        flattrs = count_pending_flattrs(conn, view.account_id)
        paid = payout_totals(conn, view.account_id)
    # A payout on its way is a hold too; "reserved in its tips" shows only the tips'.
    view = replace(view, reserved_minor=view.reserved_minor - paid.in_payout_minor)
    if as_json:
        emit_json(_account_json(view, flattrs, paid))
        return
    cur = ctx.settings.currency
    rows = [
        ("account", f"@{view.handle}" if view.handle else "-"),
        ("id", f"{view.platform}:{view.user_id}"),
        ("status", view.status),
        ("available", money(view.available_minor, cur)),
        ("reserved in its tips", money(view.reserved_minor, cur)),
        ("held for it", money(view.held_for_minor, cur)),
        ("flattrs pending", f"{flattrs} until the month is settled"),
        ("in payout", money(paid.in_payout_minor, cur)),
        ("paid out", money(paid.paid_out_minor, cur)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@click.group("escrow")
def escrow() -> None:
    """Money waiting for creators."""


@escrow.command("balances")
@json_option
@pass_ctx
def escrow_balances(ctx: Context, as_json: bool) -> None:
    """What is held, per creator, largest first.

    \b
    Example:
      tipjar escrow balances --json
    """
    report = ctx.ledger.escrow_balances()
    cur = ctx.settings.currency
    if as_json:
        emit_json(
            {
                "currency": cur,
                "total_held_minor": report.total_held_minor,
                "holds": report.holds,
                "recipients": [
                    {
                        "platform": r.platform,
                        "user_id": r.user_id,
                        "handle": r.handle,
                        "held_minor": r.held_minor,
                        "tips": r.tips,
                        "supporters": r.supporters,
                        "oldest_at": r.oldest_at,
                        "next_expiry_at": r.next_expiry_at,
                        "notices_sent": r.notices_sent,
                    }
                    for r in report.recipients
                ],
            }
        )
        return
    click.echo(
        table(
            ["creator", "id", "held", "tips", "supporters", "oldest", "next expiry", "notices"],
            [
                (
                    f"@{r.handle}" if r.handle else "-",
                    f"{r.platform}:{r.user_id}",
                    money(r.held_minor, cur),
                    r.tips,
                    r.supporters,
                    when(r.oldest_at),
                    when(r.next_expiry_at),
                    r.notices_sent,
                )
                for r in report.recipients
            ],
            right=(2, 3, 4, 7),
        )
    )
    click.echo(f"\n{money(report.total_held_minor, cur)} held in {report.holds} holds")


@escrow.command("show")
@click.argument("who")
@json_option
@pass_ctx
def escrow_show(ctx: Context, who: str, as_json: bool) -> None:
    """The holds waiting for one creator.

    \b
    Example:
      tipjar escrow show @bob
    """
    identity = ctx.identity(who)
    with ctx.engine.connect() as conn:
        holds = holds_for(conn, identity)
    cur = ctx.settings.currency
    if as_json:
        emit_json(
            {
                "currency": cur,
                "holds": [
                    {
                        "tip_id": h.tip_id,
                        "supporter": h.supporter_handle,
                        "supporter_user_id": h.supporter_user_id,
                        "amount_minor": h.amount_minor,
                        "created_at": h.created_at,
                        "expires_at": h.expires_at,
                        "source_id": h.source_id,
                    }
                    for h in holds
                ],
            }
        )
        return
    click.echo(
        table(
            ["tip", "from", "amount", "since", "expires"],
            [
                (
                    h.tip_id,
                    f"@{h.supporter_handle}" if h.supporter_handle else h.supporter_user_id,
                    money(h.amount_minor, cur),
                    when(h.created_at),
                    when(h.expires_at),
                )
                for h in holds
            ],
            right=(0, 2),
        )
    )


@click.command("expire")
@click.option("--once", is_flag=True, required=True, help="Run one pass and exit.")
@click.option("--batch", default=500, show_default=True, help="Holds per transaction.")
@json_option
@pass_ctx
def expire(ctx: Context, once: bool, batch: int, as_json: bool) -> None:
    """Return every expired hold to its supporter.

    \b
    Example:
      tipjar expire --once
    """
    with progress(None, "expiring holds") as bar:
        run = ctx.ledger.expire_due(batch=batch, progress=bar.update)
    cur = ctx.settings.currency
    if as_json:
        emit_json({"voided": run.voided, "returned_minor": run.returned_minor})
        return
    holds = "hold" if run.voided == 1 else "holds"
    click.echo(f"{run.voided} {holds} expired; {money(run.returned_minor, cur)} returned")


@click.command("audit")
@json_option
@pass_ctx
def audit(ctx: Context, as_json: bool) -> None:
    """Recompute the ledger from its transfers; exit 1 when anything is off.

    The result is recorded: after a failed self-check of the worker, settlement waits
    for a clean run of this command.

    \b
    Example:
      tipjar audit --json
    """
    started = utcnow()
    problems = ctx.ledger.check_ledger()
    # Recorded: a clean audit by a maintainer is what lets a stopped settlement run again.
    transaction(
        ctx.engine,
        lambda conn: selfcheck.record(conn, selfcheck.MAINTAINER, problems, started, utcnow()),
    )
    if as_json:
        emit_json(
            {
                "ok": not problems,
                "problems": [p.message for p in problems],
                # The same problems as data: kind and the account/transfer/tip concerned.
                "details": [p.as_json() for p in problems],
            }
        )
    elif problems:
        for p in problems:
            click.echo(f"problem: {p}")
    else:
        click.echo("ledger OK: every counter matches its transfers")
    if problems:
        raise SystemExit(EXIT_PROBLEM)


def register(main: click.Group) -> None:
    for command in (check_config, db, funds, accounts, escrow, expire, audit):
        main.add_command(command)
