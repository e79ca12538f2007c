"""The sandbox answers in the shapes of the X API's own OpenAPI document.

Each response the bot relies on is validated against the response schema of its path in
`../shared/x-api/openapi-v2.json` (refs resolved through a `referencing` registry); the
problem bodies in `errors[]` and error responses are also checked against the schema
their `type` maps to, since JSON Schema ignores OpenAPI's `discriminator`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from bot.platforms.x.sandbox import ManualClock, Sandbox

OPENAPI = Path(__file__).resolve().parents[3] / "shared" / "x-api" / "openapi-v2.json"
FIXTURES = OPENAPI.parents[1] / "fixtures" / "x-api"
DOC_URI = "urn:x-api:openapi-v2"

pytestmark = pytest.mark.skipif(
    not OPENAPI.exists(), reason=f"the X API OpenAPI document is not at {OPENAPI}"
)

MENTION_FIELDS = (
    "author_id,created_at,entities,in_reply_to_user_id,referenced_tweets,"
    "edit_history_tweet_ids,conversation_id,display_text_range,attachments"
)
MENTION_EXPANSIONS = "author_id,entities.mentions.username,in_reply_to_user_id,referenced_tweets.id"


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` becomes a JSON Schema type union with null."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


class Schemas:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = _openapi_to_json_schema(document)
        resource = DRAFT202012.create_resource(self.document)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
        problem = self.document["components"]["schemas"]["Problem"]
        self.problem_mapping: dict[str, str] = problem["discriminator"]["mapping"]

    def validate(self, instance: Any, pointer: str) -> None:
        schema = {"$ref": f"{DOC_URI}{pointer}"}
        jsonschema.Draft202012Validator(schema, registry=self.registry).validate(instance)

    def validate_schema(self, instance: Any, name: str) -> None:
        self.validate(instance, f"#/components/schemas/{name}")

    def validate_response(self, path: str, method: str, response: requests.Response) -> None:
        """Validate a body against the path's schema for its status and content type."""
        responses = self.document["paths"][path][method]["responses"]
        declared = responses.get(str(response.status_code), responses.get("default"))
        assert declared is not None, f"{method} {path} declares no {response.status_code}"
        media = response.headers["content-type"].split(";")[0]
        content = declared["content"]
        assert media in content, f"{media} is not a declared content type: {list(content)}"
        ref = content[media]["schema"]["$ref"]
        body = response.json()
        self.validate(body, ref)
        if media == "application/problem+json":
            self.validate_problem(body)
        for problem in body.get("errors", []) if media == "application/json" else []:
            self.validate_problem(problem)

    def validate_problem(self, problem: dict[str, Any]) -> None:
        assert problem["type"] in self.problem_mapping, problem["type"]
        self.validate(problem, self.problem_mapping[problem["type"]])


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas(json.loads(OPENAPI.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(datetime(2024, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def sandbox(clock: ManualClock) -> Iterator[Sandbox]:
    with Sandbox(clock=clock) as running:
        world = running.world
        alice = world.add_user("alice", name="Alice")
        bob = world.add_user("bob", name="Bob")
        art = world.mention(bob, "my new drawing")
        tip = world.mention(alice, "@flattr @bob €2 for the drawing", in_reply_to=art.id)
        world.mention(bob, "", retweet_of=tip.id)
        world.mention(alice, "@bob @flattr", in_reply_to=art.id)
        first = world.mention(alice, "@flattr @nobody_here 1€")
        world.mention(alice, "@flattr @bob 1€", edit_of=first.id)
        world.mention(bob, "@flattr help")
        yield running


def test_the_recorded_platform_payloads_pass_the_same_validation(schemas: Schemas) -> None:
    """The checker itself is sound: real recorded responses validate with it."""
    cases = {
        "test_client_get_users_mentions.json": "Get2UsersIdMentionsResponse",
        "test_client_get_users.json": "Get2UsersByResponse",
        "test_client_get_me.json": "Get2UsersMeResponse",
        "test_client_create_and_delete_tweet.json": "TweetCreateResponse",
        "test_manage_and_lookup_direct_messages.json": "CreateDmEventResponse",
    }
    for name, schema in cases.items():
        path = FIXTURES / name
        if path.exists():
            first = json.loads(path.read_text(encoding="utf-8"))[0]
            schemas.validate_schema(first["response"]["body"], schema)


def test_the_checker_rejects_a_wrong_shape(schemas: Schemas) -> None:
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate_schema({"data": [{"id": 12, "text": "numeric id"}]}, "Get2UsersByResponse")


def test_a_mentions_page_with_every_expansion_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    params: dict[str, str | int] = {
        "max_results": 5,
        "tweet.fields": MENTION_FIELDS,
        "expansions": MENTION_EXPANSIONS,
        "user.fields": "created_at,description,protected,verified",
    }
    response = api.get(f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions", params=params)
    assert response.status_code == 200
    schemas.validate_response("/2/users/{id}/mentions", "get", response)
    body = response.json()
    assert body["includes"]["users"] and body["includes"]["tweets"]
    assert body["meta"]["next_token"]
    for tweet in body["data"]:
        assert datetime.fromisoformat(tweet["created_at"]).tzinfo is not None


def test_a_recent_search_for_the_bots_mentions_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    params: dict[str, str | int] = {
        "query": "@flattr -is:retweet",
        "max_results": 10,
        "since_id": 1,
        "tweet.fields": MENTION_FIELDS,
        "expansions": MENTION_EXPANSIONS,
        "user.fields": "protected",
    }
    response = api.get(f"{sandbox.base_url}/2/tweets/search/recent", params=params)
    assert response.status_code == 200
    schemas.validate_response("/2/tweets/search/recent", "get", response)
    body = response.json()
    assert body["data"] and all("RT @" not in t["text"] for t in body["data"])
    assert all(len(t["display_text_range"]) == 2 for t in body["data"])
    empty = api.get(
        f"{sandbox.base_url}/2/tweets/search/recent",
        params={"query": "@flattr -is:retweet", "since_id": body["meta"]["newest_id"]},
    )
    schemas.validate_response("/2/tweets/search/recent", "get", empty)
    refused = api.get(f"{sandbox.base_url}/2/tweets/search/recent", params={"query": "cats"})
    assert refused.status_code == 400
    schemas.validate_response("/2/tweets/search/recent", "get", refused)


def test_an_empty_mentions_page_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    newest = sandbox.world.mentions_of(sandbox.bot_user.id)[0].id
    response = api.get(
        f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions", params={"since_id": newest}
    )
    schemas.validate_response("/2/users/{id}/mentions", "get", response)
    assert response.json() == {"meta": {"result_count": 0}}


def test_a_user_lookup_with_an_unknown_handle_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    response = api.get(f"{sandbox.base_url}/2/users/by", params={"usernames": "alice,ghost"})
    assert response.status_code == 200
    schemas.validate_response("/2/users/by", "get", response)
    assert [e["value"] for e in response.json()["errors"]] == ["ghost"]


def test_a_user_lookup_where_nobody_exists_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    response = api.get(f"{sandbox.base_url}/2/users/by", params={"usernames": "ghost,phantom"})
    schemas.validate_response("/2/users/by", "get", response)
    assert "data" not in response.json()


def test_users_me_matches_the_schema(schemas: Schemas, sandbox: Sandbox) -> None:
    token = sandbox.user_token("bob")
    response = requests.get(
        f"{sandbox.base_url}/2/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    schemas.validate_response("/2/users/me", "get", response)


def test_users_by_id_and_by_username_match_the_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    bob = sandbox.world.user("bob")
    found = api.get(f"{sandbox.base_url}/2/users/{bob.id}", params={"user.fields": "created_at"})
    schemas.validate_response("/2/users/{id}", "get", found)
    missing = api.get(f"{sandbox.base_url}/2/users/42")
    schemas.validate_response("/2/users/{id}", "get", missing)
    by_name = api.get(f"{sandbox.base_url}/2/users/by/username/bob")
    schemas.validate_response("/2/users/by/username/{username}", "get", by_name)
    assert found.json()["data"]["id"] == by_name.json()["data"]["id"] == bob.id
    assert missing.json()["errors"][0]["title"] == "Not Found Error"


def test_a_created_post_and_a_duplicate_refusal_match_the_schema(
    schemas: Schemas, sandbox: Sandbox, as_bot: requests.Session
) -> None:
    reply_to = sandbox.world.mentions_of(sandbox.bot_user.id)[-1].id
    payload = {"text": "@alice thanks, noted", "reply": {"in_reply_to_tweet_id": reply_to}}
    created = as_bot.post(f"{sandbox.base_url}/2/tweets", json=payload)
    duplicate = as_bot.post(f"{sandbox.base_url}/2/tweets", json=payload)
    assert (created.status_code, duplicate.status_code) == (201, 403)
    schemas.validate_response("/2/tweets", "post", created)
    schemas.validate_response("/2/tweets", "post", duplicate)


def test_a_sent_direct_message_matches_the_schema(
    schemas: Schemas, sandbox: Sandbox, as_bot: requests.Session
) -> None:
    bob = sandbox.world.user("bob")
    response = as_bot.post(
        f"{sandbox.base_url}/2/dm_conversations/with/{bob.id}/messages", json={"text": "hello"}
    )
    assert response.status_code == 201
    schemas.validate_response(
        "/2/dm_conversations/with/{participant_id}/messages", "post", response
    )


def test_a_rate_limited_request_matches_the_problem_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    sandbox.world.fail_next("/2/users/by", 429)
    response = api.get(f"{sandbox.base_url}/2/users/by", params={"usernames": "alice"})
    assert response.status_code == 429
    schemas.validate_response("/2/users/by", "get", response)


def test_an_invalid_request_matches_the_problem_schema(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    response = api.get(
        f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions", params={"max_results": 500}
    )
    assert response.status_code == 400
    schemas.validate_response("/2/users/{id}/mentions", "get", response)


def test_app_only_auth_on_users_me_is_refused_with_a_problem(
    schemas: Schemas, sandbox: Sandbox, api: requests.Session
) -> None:
    response = api.get(f"{sandbox.base_url}/2/users/me")
    assert response.status_code == 403
    schemas.validate_response("/2/users/me", "get", response)
