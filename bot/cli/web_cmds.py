"""`tipjar web`: serve the claim pages locally with werkzeug's server.

Production runs the same app under gunicorn (`bot.web:create_app()`, see the Procfile);
this command is for a laptop, the demo and trying the sign-in against the sandbox.
"""

from __future__ import annotations

import click

from bot.cli.context import Context
from bot.cli.output import fail
from bot.config import ConfigError

pass_ctx = click.make_pass_decorator(Context)


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@pass_ctx
def web(ctx: Context, host: str, port: int) -> None:
    """Serve the claim pages (/claim, /me, /healthz) for local use.

    PUBLIC_BASE_URL must be where a browser reaches this server: X sends people back to
    PUBLIC_BASE_URL/oauth/callback.

    \b
    Example:
      PUBLIC_BASE_URL=http://127.0.0.1:8000 tipjar web --host 127.0.0.1 --port 8000
    """
    from werkzeug.serving import run_simple

    from bot.web import create_app
    from bot.web.serving import PathOnlyRequestHandler

    try:
        app = create_app(ctx.settings, engine=ctx.engine)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"tipjar: {problem}", err=True)
        fail("the web app cannot start (see above)")
    click.echo(
        f"tipjar web: http://{host}:{port}/claim (sign-in returns to "
        f"{ctx.settings.callback_url}); Ctrl-C stops"
    )
    run_simple(
        host,
        port,
        app,
        threaded=True,
        use_reloader=False,
        use_debugger=False,
        request_handler=PathOnlyRequestHandler,
    )


def register(main: click.Group) -> None:
    main.add_command(web)
