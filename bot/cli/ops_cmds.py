"""Maintainer commands on the running bot: `tipjar status`, everything at a glance."""

from __future__ import annotations

from typing import Any

import click

from bot.cli.context import Context
from bot.cli.output import EXIT_PROBLEM, emit_json, money, when
from bot.status import Status, collect

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _platform_lines(status: Status) -> list[str]:
    lines = []
    for p in status.sections["platforms"]:
        limit = (
            f"rate limited until {when(p['rate_limited_until'])}"
            if p["rate_limited_until"]
            else "not rate limited"
        )
        missed = p.get("missed_window_at")
        extra = f", mentions missed at {when(missed)}" if missed is not None else ""
        lines.append(
            f"  {p['platform']:<9} last poll {when(p['last_poll_at'])}"
            f" ({_age(p['last_poll_age_seconds'])}), {limit}{extra}"
        )
    return lines


def _escrow_lines(status: Status) -> list[str]:
    e, cur = status.sections["escrow"], status.currency
    lines = [
        f"  {money(e['total_held_minor'], cur)} held in {e['holds']} holds"
        f" for {e['recipients']} creators",
        f"  expiring within 7 days: {money(e['expiring_7d_minor'], cur)}"
        f" ({e['expiring_7d_holds']} holds); within 24 hours: {e['expiring_24h_holds']} holds,"
        f" {e['expiring_24h_unnoticed']} without a notice",
    ]
    for x in e["next_expiries"]:
        who = f"@{x['handle']}" if x["handle"] else f"{x['platform']}:{x['user_id']}"
        lines.append(f"    {when(x['expires_at'])}  {money(x['amount_minor'], cur):>10}  {who}")
    return lines


def _by_state(rows: dict[str, Any], cur: str) -> str:
    return (
        ", ".join(
            f"{state} {v['count']} ({money(v['amount_minor'], cur)})"
            for state, v in sorted(rows.items())
        )
        or "none"
    )


def _caps_lines(status: Status) -> list[str]:
    lines = []
    for c in status.sections.get("caps") or []:
        cap = c["spend_cap_usd_micros"]
        spend = f"${c['spend_usd_micros'] / 1e6:.2f}" + (f" of ${cap / 1e6:.2f}" if cap else "")
        lines.append(
            f"  {c['platform']:<9} today {c['posts']} posts ({c['posts_with_link']} with a link),"
            f" {c['deferred']} deferred, {c['dropped']} dropped; spend {spend}"
            + (" (cap reached)" if c["cap_reached"] else "")
        )
    return ["caps:", *lines] if lines else []


def _money_in_out_lines(status: Status) -> list[str]:
    lines: list[str] = []
    funding = status.sections.get("funding")
    if funding is not None:
        lines.append(f"top-ups:   {_by_state(funding['topups'], status.currency)}")
        if "open_debts" in funding:
            lines.append(
                f"debts:     {funding['open_debts']} open,"
                f" {money(funding['open_debts_minor'], status.currency)}"
            )
    payouts = status.sections.get("payouts")
    if payouts is not None:
        lines.append(f"payouts:   {_by_state(payouts['by_state'], status.currency)}")
    return lines


def _audit_line(status: Status) -> str:
    audit = status.sections["audit"]
    last = audit["last"]
    if last is None:
        return "ledger:    never checked (run `tipjar audit`)"
    verdict = "clean" if last["ok"] else f"{last['problems']} problem(s)"
    stopped = "; settlement stopped" if audit["settlement_stopped"] else ""
    return (
        f"ledger:    last check {when(last['finished_at'])} ({last['trigger']}): {verdict}{stopped}"
    )


def render(status: Status) -> str:
    outbox = status.sections["outbox"]["by_state"]
    lines = [
        f"tipjar status at {when(status.now)} UTC",
        "platforms:",
        *_platform_lines(status),
        "outbox:    " + (", ".join(f"{k} {v}" for k, v in outbox.items()) or "empty"),
        *_caps_lines(status),
        "escrow:",
        *_escrow_lines(status),
        *_money_in_out_lines(status),
        _audit_line(status),
        "",
    ]
    if status.attention:
        lines.append("needs a maintainer:")
        lines += [f"  - {reason}" for reason in status.attention]
    else:
        lines.append("all well")
    return "\n".join(lines)


@click.command("status")
@json_option
@pass_ctx
def status_cmd(ctx: Context, as_json: bool) -> None:
    """The bot at a glance: polls, outbox, escrow, money in and out, the last ledger check.

    Exits 1 when something needs a maintainer (a stale poll, a failed post or payout, a
    failed ledger check).

    \b
    Example:
      tipjar status
      tipjar status --json
    """
    with ctx.engine.connect() as conn:
        status = collect(conn, ctx.settings, ctx.ledger.clock())
    if as_json:
        emit_json(status.to_json())
    else:
        click.echo(render(status))
    if not status.ok:
        raise SystemExit(EXIT_PROBLEM)


def register(main: click.Group) -> None:
    main.add_command(status_cmd)
