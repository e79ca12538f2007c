"""Ingest benchmark: the real listener path, with only the HTTP layer faked in-process.

Mentions are served to the real `TweepyXApi` through `responses` in pages of 100, shaped
like X's own (entities with ids, includes.users), as X serves them: newest first, at most
800 newer than the cursor per poll. Each `poll_once` parses, resolves recipients from the
payload, applies tips through the ledger, writes outbox rows and advances the cursor in
one transaction per page: exactly what the worker does. A mix of tips to claimed creators
(posted with the fee) and unclaimed ones (held) from many funded supporters.

    python benchmarks/ingest.py --tips 5000 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses

from benchmarks.seed import account_ids, seed_creators, seed_supporters
from benchmarks.settlement import Scratch
from bot.config import load_settings
from bot.listener import poll_once
from bot.platforms.x.api import TweepyXApi
from escrow.audit import check_ledger
from escrow.db import make_engine

BOT_ID = "999000999"
BOT = "flattr"
API = "https://api.twitter.com"
CREATORS_FIRST_ID = 10_000_000
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


def _tweet(n: int, supporters: int, creators: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    author = 1 + n % supporters
    creator = n % creators
    creator_id = str(CREATORS_FIRST_ID + creator)
    handle = f"creator{creator + 1}"
    tweet_id = str(1_000_000_000 + n)
    text = f"@{BOT} @{handle} €1 thanks for the thread"
    tweet = {
        "id": tweet_id,
        "text": text,
        "author_id": str(author),
        "created_at": (NOW - timedelta(seconds=10_000_000 - n)).isoformat().replace("+00:00", "Z"),
        "edit_history_tweet_ids": [tweet_id],
        "conversation_id": tweet_id,
        "entities": {
            "mentions": [
                {"start": 0, "end": 1 + len(BOT), "username": BOT, "id": BOT_ID},
                {
                    "start": 2 + len(BOT),
                    "end": 3 + len(BOT) + len(handle),
                    "username": handle,
                    "id": creator_id,
                },
            ]
        },
    }
    users = [
        {"id": str(author), "username": f"supporter{author}", "name": f"Supporter {author}"},
        {"id": creator_id, "username": handle, "name": handle},
    ]
    return tweet, users


class FakeMentions:
    """Serves `count` mentions like X: newest first, since_id, pages, 800 per cursor."""

    def __init__(self, count: int, supporters: int, creators: int):
        self.count, self.supporters, self.creators = count, supporters, creators

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        q = parse_qs(urlparse(request.url).query)
        since = int(q.get("since_id", ["999999999"])[0]) - 1_000_000_000
        size = int(q.get("max_results", ["100"])[0])
        # The mentions newer than the cursor: X reaches only the 800 newest of them, but a
        # backlog drains oldest first here so every run advances (as a live bot's does).
        # 799 a poll, not 800: a full window is how the listener knows mentions may lie
        # beyond it, and this backlog is meant to be read, not backfilled through search.
        window = list(range(since + 1, min(self.count, since + 800)))
        window.reverse()
        offset = int(q.get("pagination_token", ["0"])[0])
        page = window[offset : offset + size]
        data, users = [], {}
        for n in page:
            tweet, people = _tweet(n, self.supporters, self.creators)
            data.append(tweet)
            users.update((u["id"], u) for u in people)
        meta: dict[str, Any] = {"result_count": len(data)}
        if data:
            meta |= {"newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}
        if offset + size < len(window):
            meta["next_token"] = str(offset + size)
        body: dict[str, Any] = {"meta": meta}
        if data:
            body |= {"data": data, "includes": {"users": list(users.values())}}
        reset = str(int(time.time()) + 900)
        headers = {
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": "449",
            "x-rate-limit-reset": reset,
        }
        return 200, headers, json.dumps(body)


def run_ingest_benchmark(
    url: str, tips: int, supporters: int = 2000, creators: int = 500
) -> dict[str, Any]:
    """Ingest `tips` mentions on a scratch database made on `url`'s server; figures."""
    with Scratch(url) as scratch:
        return _ingest(scratch, tips, supporters, creators)


def _ingest(url: str, tips: int, supporters: int, creators: int) -> dict[str, Any]:
    engine = make_engine(url)
    seed_supporters(engine, supporters, deposit_minor=1_000_000)
    # Half of the creators have claimed (their tips post with a fee), half have not (held).
    seed_creators(engine, creators // 2, CREATORS_FIRST_ID, status="claimed")
    seed_creators(engine, creators - creators // 2, CREATORS_FIRST_ID + creators // 2)
    account_ids(engine, CREATORS_FIRST_ID, creators)
    settings = load_settings(
        {
            "X_BOT_USERNAME": BOT,
            "X_BOT_USER_ID": BOT_ID,
            "DATABASE_URL": url,
            "NOTICE_SCHEDULE": "none",
        },
        env_file=None,
    )
    api = TweepyXApi(bot_user_id=BOT_ID, bearer_token="bench-bearer", sleep=lambda s: None)
    applied = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            responses.GET,
            re.compile(rf"{re.escape(API)}/2/users/{BOT_ID}/mentions.*"),
            callback=FakeMentions(tips, supporters, creators),
        )
        started = time.perf_counter()
        while True:
            result = poll_once(engine, api, settings, clock=lambda: NOW)
            if result.error:
                raise RuntimeError(result.error)
            applied += result.tips_applied
            if result.mentions_seen == 0:
                break
        seconds = time.perf_counter() - started
    with engine.connect() as conn:
        problems = check_ledger(conn)
    engine.dispose()
    if problems or applied != tips:
        raise RuntimeError(f"ingest went wrong: applied {applied} of {tips}: {problems[:3]}")
    return {"tips": applied, "seconds": round(seconds, 3), "tips_per_s": round(applied / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest benchmark (real listener path).")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--tips", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(run_ingest_benchmark(args.database_url, args.tips)))


if __name__ == "__main__":
    main()
