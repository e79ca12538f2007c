"""`tipjar payouts`: the maintainer's side of money out.

`list` shows every payout; `run --once` sends the due Stripe payouts (what the worker does
every minute); `export --csv` lists the manual payouts to pay, with the creators' details
decrypted; `mark-paid` posts a manual payout once it is paid; `cancel` voids a payout that
has not reached Stripe (the money goes back to the creator's balance).
"""

from __future__ import annotations

import csv
import sys

import click

from bot.cli.context import Context
from bot.cli.output import EXIT_PROBLEM, emit_json, fail, money, table, when
from escrow import payouts
from escrow.db import transaction
from escrow.ledger import LedgerError
from escrow.money import Money
from escrow.selfcheck import LedgerUnsound

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group("payouts")
def payouts_group() -> None:
    """Creators' withdrawals: list, send, export, mark paid, cancel."""


@payouts_group.command("list")
@click.option("--state", type=click.Choice(payouts.STATES), help="Only payouts in this state.")
@json_option
@pass_ctx
def payouts_list(ctx: Context, state: str | None, as_json: bool) -> None:
    """Payouts, newest first: creator, amount, provider, state, Stripe transfer, attempts.

    \b
    Example:
      tipjar payouts list
      tipjar payouts list --state pending --json
    """
    with ctx.engine.connect() as conn:
        lines = payouts.list_payouts(conn, state)
    code = ctx.settings.currency
    if as_json:
        emit_json({"currency": code, "payouts": [line.as_json() for line in lines]})
        return
    if not lines:
        click.echo("no payouts yet" + (f" in state {state}" if state else ""))
        return
    rows = [
        (
            line.id,
            line.creator,
            money(line.amount_minor, code),
            line.provider,
            line.state + (" (reversed)" if line.reversed_minor else ""),
            line.reference or "-",
            line.attempts,
            when(line.created_at),
            (line.last_error or "")[:60],
        )
        for line in lines
    ]
    headers = ["id", "creator", "amount", "provider", "state", "transfer", "tries", "when", "error"]
    click.echo(table(headers, rows, [0, 2, 6]))


@payouts_group.command("run")
@click.option("--once", is_flag=True, required=True, help="Send what is due, then exit.")
@json_option
@pass_ctx
def payouts_run(ctx: Context, once: bool, as_json: bool) -> None:
    """Send the Stripe payouts that are due (the worker does this every minute).

    \b
    Example:
      tipjar payouts run --once
    """
    from bot.payments.payouts import ConnectGateway, run_relay

    settings = ctx.settings
    if settings.payout_method != "stripe":
        run = None
    else:
        try:
            run = run_relay(ctx.engine, ConnectGateway(settings), ctx.ledger.clock)
        except LedgerUnsound as e:
            fail(str(e), EXIT_PROBLEM)
    if as_json:
        emit_json(
            {
                "provider": settings.payout_method,
                "sent": run.sent if run else 0,
                "refused": run.refused if run else 0,
                "retry": run.retry if run else 0,
            }
        )
        return
    if run is None:
        click.echo(f"nothing to send: PAYOUT_PROVIDER is {settings.payout_method}")
        return
    click.echo(f"payouts: {run}")


@payouts_group.command("export")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout, for a spreadsheet.")
@json_option
@pass_ctx
def payouts_export(ctx: Context, as_csv: bool, as_json: bool) -> None:
    """The manual payouts to pay now, with where to pay them (decrypted), as CSV or JSON.

    Pay each one, then `tipjar payouts mark-paid ID --reference REF`. The output holds the
    creators' payout details in clear: keep it off shared drives and delete it after use.

    \b
    Example:
      tipjar payouts export --csv > due.csv
    """
    from bot.payments import details

    if as_csv == as_json:
        raise click.UsageError("give one of --csv or --json")
    settings = ctx.settings
    with ctx.engine.connect() as conn:
        due = list(reversed(payouts.list_payouts(conn, "pending", provider="manual")))
    if due and not settings.payout_details_key:
        fail("PAYOUT_DETAILS_KEY is not set: the payout details cannot be read")

    def readable(ciphertext: str | None) -> str:
        if not ciphertext:
            return ""
        try:
            return details.decrypt(settings.payout_details_key, ciphertext)
        except details.DetailsError as e:
            return f"(unreadable: {e})"

    rows = [
        {
            "id": line.id,
            "creator": line.creator,
            "amount": Money(line.amount_minor, line.currency).plain(),
            "amount_minor": line.amount_minor,
            "currency": line.currency,
            "details": readable(line.details_ciphertext),
            "requested_at": line.created_at,
        }
        for line in due
    ]
    if as_json:
        emit_json({"currency": settings.currency, "payouts": rows})
        return
    out = csv.writer(sys.stdout, lineterminator="\n")
    columns = ["id", "creator", "amount", "currency", "details", "requested_at"]
    out.writerow(columns)
    for row, line in zip(rows, due, strict=True):
        out.writerow([row[c] for c in columns[:-1]] + [when(line.created_at)])


@payouts_group.command("mark-paid")
@click.argument("payout_id", type=int)
@click.option("--reference", required=True, help="The bank or PayPal transaction id.")
@json_option
@pass_ctx
def payouts_mark_paid(ctx: Context, payout_id: int, reference: str, as_json: bool) -> None:
    """Post manual payout PAYOUT_ID: you paid it, REFERENCE says how. Once.

    \b
    Example:
      tipjar payouts mark-paid 12 --reference bank-2026-0107
    """
    try:
        result = transaction(
            ctx.engine,
            lambda conn: payouts.mark_paid(conn, payout_id, reference, ctx.ledger.clock()),
        )
    except LedgerError as e:
        fail(str(e), EXIT_PROBLEM)
    if as_json:
        emit_json({"id": payout_id, "state": "posted", "result": result})
        return
    click.echo(result)


@payouts_group.command("cancel")
@click.argument("payout_id", type=int)
@json_option
@pass_ctx
def payouts_cancel(ctx: Context, payout_id: int, as_json: bool) -> None:
    """Void pending payout PAYOUT_ID: the money goes back to the creator's balance.

    \b
    Example:
      tipjar payouts cancel 12
    """
    try:
        result = transaction(
            ctx.engine, lambda conn: payouts.cancel(conn, payout_id, ctx.ledger.clock())
        )
    except LedgerError as e:
        fail(str(e), EXIT_PROBLEM)
    if as_json:
        emit_json({"id": payout_id, "state": "voided", "result": result})
        return
    click.echo(result)


def register(main: click.Group) -> None:
    main.add_command(payouts_group)
