"""Mastodon JSON in the shapes the instance serves (as recorded in Mastodon.py's cassettes),
built small for `responses`: accounts, statuses with h-card mentions, notifications."""

from __future__ import annotations

from typing import Any

BASE = "https://home.social"
HOME = "home.social"

Json = dict[str, Any]


def account(username: str, domain: str = HOME, account_id: str = "1") -> Json:
    acct = username if domain == HOME else f"{username}@{domain}"
    return {
        "id": account_id,
        "username": username,
        "acct": acct,
        "display_name": "",
        "locked": False,
        "bot": False,
        "group": False,
        "created_at": "2026-08-01T00:00:00.000Z",
        "note": "",
        "url": f"https://{domain}/@{username}",
        "uri": f"https://{domain}/users/{username}",
        "avatar": f"https://{domain}/avatars/original/missing.png",
        "emojis": [],
        "fields": [],
    }


def mention(username: str, domain: str = HOME, account_id: str = "9") -> Json:
    acct = username if domain == HOME else f"{username}@{domain}"
    return {
        "id": account_id,
        "username": username,
        "url": f"https://{domain}/@{username}",
        "acct": acct,
    }


def h_card(m: Json) -> str:
    return (
        f'<span class="h-card" translate="no"><a href="{m["url"]}" class="u-url mention">'
        f"@<span>{m['username']}</span></a></span>"
    )


def status(
    status_id: str,
    author: Json,
    content: str,
    mentions: list[Json],
    *,
    visibility: str = "public",
    in_reply_to_id: str | None = None,
    in_reply_to_account_id: str | None = None,
    reblog: Json | None = None,
    edited_at: str | None = None,
) -> Json:
    return {
        "id": status_id,
        "created_at": "2026-08-01T13:51:39.138Z",
        "in_reply_to_id": in_reply_to_id,
        "in_reply_to_account_id": in_reply_to_account_id,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": visibility,
        "language": "en",
        "uri": f"{BASE}/users/{author['username']}/statuses/{status_id}",
        "url": f"{BASE}/@{author['username']}/{status_id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": edited_at,
        "content": content,
        "reblog": reblog,
        "account": author,
        "media_attachments": [],
        "mentions": mentions,
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def notification(note_id: str, st: Json, kind: str = "mention") -> Json:
    return {
        "id": note_id,
        "type": kind,
        "created_at": st["created_at"],
        "group_key": f"ungrouped-{note_id}",
        "account": st["account"],
        "status": st,
    }


def rate_headers(remaining: int = 299, reset: str = "2026-08-01T13:55:00.000Z") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": reset,
    }
