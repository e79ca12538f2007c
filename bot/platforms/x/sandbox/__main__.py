"""`python -m bot.platforms.x.sandbox`: run the loopback X API in the foreground with demo accounts.

Prints the URLs and the environment that points tipjar at it, then serves until Ctrl-C.
Nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from bot.platforms.x.sandbox.server import Sandbox

DEMO_USERS = (("alice", "Alice Supporter"), ("bob", "Bob Creator"), ("carol", "Carol Artist"))


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.platforms.x.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=8765, help="0 picks any free port")
    parser.add_argument("--bot-username", default="flattr")
    args = parser.parse_args(argv)

    sandbox = Sandbox(host=args.host, port=args.port, bot_username=args.bot_username)
    for username, name in DEMO_USERS:
        if sandbox.world.find_user(username) is None:
            sandbox.world.add_user(username, name=name)
    base_url = sandbox.start()
    print(f"X sandbox running at {base_url}  (control page: {base_url}/)")
    print(f"  consent page: {sandbox.authorize_url}")
    print(f"  token URL:    {sandbox.token_url}")
    print("  accounts:     " + ", ".join(f"@{u.username} ({u.id})" for u in sandbox.world.users))
    print("Environment for tipjar (sandbox-only fake credentials):")
    for key, value in sandbox.env().items():
        print(f"  {key}={value}")
    print("Ctrl-C to stop.", flush=True)
    # A process manager stops us with SIGTERM: leave as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
