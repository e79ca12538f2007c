"""Throughput of the tip language parser on one core, over a realistic mix of mentions.

Prints JSON: ``{"tweets_per_s": N, ...}`` (median of several rounds). The mix imitates a
mentions timeline of a tipping bot: most tweets name the bot (that is why they are in the
timeline), a minority are tips in their various forms, many are conversation, and a few
are long. Run: ``.venv/bin/python benchmarks/parse.py [--rounds 5] [--tweets 100000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# The repository root, so that the script runs from anywhere without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.commands import (
    ControlCommand,
    NotACommand,
    Rejection,
    TipCommand,
    parse,
)

BOT = "flattr"

# (weight, tweet, in_reply_to_username, author_username)
MIX: list[tuple[int, str, str | None, str | None]] = [
    # explicit tips and flattrs
    (8, "@flattr @bob", None, "alice"),
    (8, "@flattr @bob €2", None, "alice"),
    (4, "@flattr @bob @carol thanks for the great thread!", None, "alice"),
    (4, "@flattr @bob 2.50 EUR", None, "alice"),
    (3, "@flattr @bob 0,50 €", None, "alice"),
    (3, "Loved this explainer, so: @flattr @bob_writes €1", None, "dave"),
    (2, "@carol @flattr @bob €1", "carol", "alice"),
    # reply tips
    (6, "@carol @flattr", "carol", "alice"),
    (4, "@carol @flattr €0.50", "carol", "alice"),
    (2, "@carol @dave @flattr tip", "carol", "alice"),
    # rejections
    (2, "@flattr @bob $1", None, "alice"),
    (1, "@flattr @bob 1,000 €", None, "alice"),
    (1, "@flattr @bob €0.01", None, "alice"),
    (1, "@flattr @alice", None, "alice"),
    # commands
    (1, "@flattr help", None, "erin"),
    (1, "@flattr @alice stop", BOT, "bob"),
    # conversation that names the bot
    (8, "@carol @flattr what happened here???", "carol", "frank"),
    (6, "Good @WilliamCohan dissection of @elonmusk's @flattr deal, also @PuckNews", None, "g"),
    (6, "@flattr bring back minimized playback for video", None, "h"),
    (5, "@alice @flattr @bob nice one!", "alice", "ivan"),
    (
        5,
        "@flattr @support this is my ENTIRE feed, why do you think i want this. respond to my "
        "ticket. https://t.co/W5GxALkkZd",
        None,
        "judy",
    ),
    (
        4,
        "@KeepusAllFree @AmoonRawh @FatefulHaven @jakeshieldsajj @flattr Also explains why "
        "they\u2019re not even doing trials. https://t.co/gUCbF0ppL7",
        "KeepusAllFree",
        "k",
    ),
    (4, "So, I am down on @elonmusk because of @flattr, but this post is BS.", None, "l"),
    (3, "\u05ea\u05d5\u05d3\u05d4 @flattr \u05e2\u05dc \u05d4\u05db\u05dc \U0001f64f", None, "m"),
    (3, "\u306e@flattr\u306b\u5230\u7740\u3092\u5f85\u3063\u3066\u3044\u308b", None, "n"),
    # tweets that do not name the bot at all (quotes, edits, stale timeline entries)
    (4, "@bob @carol see you at the meetup tomorrow!", "bob", "o"),
    (3, "Flattr was a great idea back in 2010, remember?", None, "p"),
    # a long one
    (1, ("@flattr @bob " + "thanks so much for everything you write, " * 6).strip(), None, "q"),
]


def _tweets(count: int, seed: int = 7) -> list[tuple[str, str | None, str | None]]:
    rng = random.Random(seed)
    weights = [w for w, *_ in MIX]
    picks = rng.choices(MIX, weights=weights, k=count)
    return [(text, replied_to, author) for _w, text, replied_to, author in picks]


def _round(tweets: list[tuple[str, str | None, str | None]]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) to parse ``tweets`` once."""
    cpu, wall = time.process_time(), time.perf_counter()
    for text, replied_to, author in tweets:
        parse(text, bot_username=BOT, in_reply_to_username=replied_to, author_username=author)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tweets", type=int, default=100_000)
    args = parser.parse_args(argv)

    tweets = _tweets(args.tweets)
    kinds: dict[str, int] = {}
    for text, replied_to, author in tweets[:10_000]:
        result = parse(
            text, bot_username=BOT, in_reply_to_username=replied_to, author_username=author
        )
        kind = {
            TipCommand: "tip",
            ControlCommand: "command",
            Rejection: "rejection",
            NotACommand: "not_a_command",
        }[type(result)]
        kinds[kind] = kinds.get(kind, 0) + 1

    _round(tweets[:5_000])  # warm up caches before timing
    rounds = [_round(tweets) for _ in range(args.rounds)]
    cpu = statistics.median(r[0] for r in rounds)
    wall = statistics.median(r[1] for r in rounds)
    report = {
        # CPU time of this one process: what one core does, even on a busy machine.
        "tweets_per_s": round(args.tweets / cpu),
        "wall_tweets_per_s": round(args.tweets / wall),
        "best_tweets_per_s": round(args.tweets / min(r[0] for r in rounds)),
        "us_per_tweet": round(cpu / args.tweets * 1e6, 2),
        "tweets": args.tweets,
        "rounds": args.rounds,
        "mix_share_of_first_10k": kinds,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
