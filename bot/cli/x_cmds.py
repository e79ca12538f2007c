"""Commands that talk to the platforms: one poll, the outbox (send and list), the worker.

Each works on every platform in PLATFORMS (X by default, Mastodon, or both).
"""

from __future__ import annotations

import click

from bot.cli.context import Context
from bot.cli.output import EXIT_PROBLEM, emit_json, fail, table, when
from bot.errors import init_sentry
from bot.listener import PAGE_SIZE, PollResult, poll_once
from bot.logs import configure_logging, log_context
from bot.notices import plan_notices
from bot.outbox import SendResult, list_outbox, send_pending
from bot.platforms import Platform
from bot.platforms.wiring import PlatformNotConfigured, build_platforms
from bot.status import record_poll
from escrow.db import transaction
from escrow.ledger import utcnow
from escrow.schema import OUTBOX_STATES

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _logging(ctx: Context) -> None:
    configure_logging(ctx.settings)
    init_sentry(ctx.settings)


def _platforms(ctx: Context) -> list[Platform]:
    try:
        return build_platforms(ctx.settings)
    except PlatformNotConfigured as e:
        fail(str(e))


@click.command("poll")
@click.option("--once", is_flag=True, required=True, help="Poll once and exit.")
@click.option(
    "--page-size",
    default=PAGE_SIZE,
    show_default=True,
    type=click.IntRange(5, 100),
    help="Mentions per page, and per transaction.",
)
@json_option
@pass_ctx
def poll(ctx: Context, once: bool, page_size: int, as_json: bool) -> None:
    """Read every new mention of the bot and apply it; exit 1 if a platform failed.

    With several platforms (PLATFORMS=x,mastodon) --json prints one result per platform.

    \b
    Example:
      tipjar poll --once --json
    """
    _logging(ctx)
    results = {p.name: _poll(ctx, p, page_size) for p in _platforms(ctx)}
    if as_json:
        if len(results) == 1:
            emit_json(next(iter(results.values())).to_json())
        else:
            emit_json({"platforms": {name: r.to_json() for name, r in results.items()}})
    for name, result in results.items():
        if not as_json:
            _say_poll(name, result, heading=len(results) > 1)
    if any(r.error for r in results.values()):
        raise SystemExit(EXIT_PROBLEM)


def _poll(ctx: Context, platform: Platform, page_size: int) -> PollResult:
    """One platform's poll, logged under its name and recorded for `tipjar status`."""
    with log_context(job="poll", platform=platform.name):
        result = poll_once(ctx.engine, platform, ctx.settings, page_size=page_size)
    polled = result.ok and result.rate_limited_until is None
    record_poll(
        ctx.engine,
        platform.name,
        result.mentions_seen,
        result.outcomes,
        ok=polled,
        now=utcnow(),
        missed_window=result.missed_window,
    )
    return result


def _say_poll(name: str, result: PollResult, heading: bool) -> None:
    label = {"x": "X", "mastodon": "Mastodon"}.get(name, name)
    if heading:
        click.echo(f"{label}:")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())) or "none"
    click.echo(
        f"{result.mentions_seen} mentions seen, {result.processed} new, "
        f"{result.tips_applied} tips applied (outcomes: {outcomes})"
    )
    if result.backfilled:
        click.echo(
            f"{label}'s mentions window was overrun: {result.backfilled} older mentions "
            "read through search"
        )
    if result.missed_window:
        click.echo(
            f"mentions older than {label}'s search reaches could not be read: see the log",
            err=True,
        )
    if result.rate_limited_until is not None:
        click.echo(f"rate limited by {label} until {when(result.rate_limited_until)} UTC")
    if result.error:
        click.echo(f"{label} failed, nothing lost, the next poll retries: {result.error}", err=True)


@click.group("notices")
def notices() -> None:
    """Replies and creator notices waiting in the outbox."""


@notices.command("send")
@click.option("--once", is_flag=True, required=True, help="Plan and send once, then exit.")
@click.option("--limit", default=50, show_default=True, help="Most posts to send in this run.")
@json_option
@pass_ctx
def notices_send(ctx: Context, once: bool, limit: int, as_json: bool) -> None:
    """Plan the creator notices due now, then send what the outbox holds.

    \b
    Example:
      tipjar notices send --once
    """
    _logging(ctx)
    platforms = _platforms(ctx)
    now = utcnow()
    plan = transaction(ctx.engine, lambda conn: plan_notices(conn, ctx.settings, now))
    sent = _send_all(ctx, platforms, limit)
    if as_json:
        emit_json({"planned": plan.to_json(), "sent": sent.to_json()})
    else:
        click.echo(
            f"{plan.planned} notices planned ({plan.deferred} wait for tomorrow's cap); "
            f"{sent.sent} sent, {sent.failed} failed, {sent.skipped} skipped, "
            f"{sent.retry_later} to retry"
        )
        if sent.rate_limited_until is not None:
            click.echo(f"posting is rate limited until {when(sent.rate_limited_until)} UTC")
        if sent.error:
            click.echo(f"posting failed, the next run retries: {sent.error}", err=True)
    if sent.error:
        raise SystemExit(EXIT_PROBLEM)


def _send_all(ctx: Context, platforms: list[Platform], limit: int) -> SendResult:
    """Each platform's relay in turn; one summed result (the first error and limit kept)."""
    results = [
        send_pending(ctx.engine, p, utcnow(), limit, settings=ctx.settings) for p in platforms
    ]
    if len(results) == 1:
        return results[0]
    return SendResult(
        sent=sum(r.sent for r in results),
        failed=sum(r.failed for r in results),
        skipped=sum(r.skipped for r in results),
        retry_later=sum(r.retry_later for r in results),
        rate_limited_until=next(
            (r.rate_limited_until for r in results if r.rate_limited_until), None
        ),
        error=next((r.error for r in results if r.error), None),
        held_back=sum(r.held_back for r in results),
    )


@notices.command("list")
@click.option("--state", "state_filter", type=click.Choice(OUTBOX_STATES), help="Only this state.")
@click.option("--limit", default=50, show_default=True, help="Most rows to show, newest first.")
@json_option
@pass_ctx
def notices_list(ctx: Context, state_filter: str | None, limit: int, as_json: bool) -> None:
    """The outbox, newest first.

    \b
    Example:
      tipjar notices list --state pending
    """
    with ctx.engine.connect() as conn:
        rows = list_outbox(conn, state_filter=state_filter, limit=limit)
    if as_json:
        emit_json(
            [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "state": r.state,
                    "topic": r.topic,
                    "recipient_account_id": r.recipient_account_id,
                    "recipient_user_id": r.recipient_user_id,
                    "in_reply_to_tweet_id": r.in_reply_to_tweet_id,
                    "text": r.text,
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at,
                    "sent_tweet_id": r.sent_tweet_id,
                    "error": r.error,
                    "created_at": r.created_at,
                    "sent_at": r.sent_at,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        click.echo("the outbox is empty" if state_filter is None else f"no {state_filter} rows")
        return
    click.echo(
        table(
            ["id", "kind", "state", "topic", "reply to", "created", "text"],
            [
                (
                    r.id,
                    r.kind,
                    r.state,
                    r.topic or "-",
                    r.in_reply_to_tweet_id or "-",
                    when(r.created_at),
                    r.text if len(r.text) <= 60 else r.text[:59] + "…",
                )
                for r in rows
            ],
            right=(0,),
        )
    )


@click.command("worker")
@pass_ctx
def worker(ctx: Context) -> None:
    """Run the scheduler (poll, notices, release, expiry, settlement) until SIGTERM.

    Only one worker is active per database; another one waits as a standby.

    \b
    Example:
      tipjar worker
    """
    from bot.metrics_state import serve_worker_metrics
    from bot.scheduler import run_worker  # APScheduler is loaded only by the worker

    _logging(ctx)
    first, *others = _platforms(ctx) or fail("PLATFORMS names no platform")
    # METRICS_PORT: /metrics for Prometheus, on loopback unless an address is given.
    serve_worker_metrics(ctx.settings, ctx.engine)
    raise SystemExit(
        run_worker(ctx.settings, engine=ctx.engine, platform=first, others=tuple(others))
    )


def register(main: click.Group) -> None:
    for command in (poll, notices, worker):
        main.add_command(command)
