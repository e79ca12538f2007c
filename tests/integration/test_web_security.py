"""The web app's protections: headers, cookies, secrets kept out of sight, plain errors."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select

from bot.config import ConfigError, Settings
from bot.web import create_app
from escrow.db import make_engine
from escrow.ledger import Identity
from escrow.schema import metadata
from tests.integration.test_web_support import (
    CLIENT_SECRET,
    SECRET_KEY,
    Site,
    assert_refused,
    web_settings,
)

CAROL = Identity.x("2001", "carol")
ALICE = Identity.x("101", "alice")


def cookie_header(response) -> str:
    (header,) = [h for h in response.headers.getlist("Set-Cookie") if "tipjar_session=" in h]
    return header


@pytest.mark.parametrize("path", ["/claim", "/me", "/nowhere", "/healthz", "/static/style.css"])
def test_every_response_carries_the_security_headers(site, path):
    response = site.client.get(path)

    csp = response.headers["Content-Security-Policy"]
    assert csp == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https://x.com;"
        " frame-ancestors 'none'; base-uri 'none'"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_carry_no_script_and_no_inline_style(site):
    site.sign_in(CAROL.user_id, "carol")
    for path in ("/claim", "/me", "/me/refuse", "/nowhere"):
        page = site.client.get(path).get_data(as_text=True)
        assert "<script" not in page.lower()
        assert "style=" not in page.lower() and "<style" not in page.lower()
        assert '<html lang="en">' in page
        assert 'name="viewport"' in page


def test_the_session_cookie_is_http_only_and_same_site_lax_but_not_secure_on_http(site):
    header = cookie_header(site.client.get("/claim/start"))

    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header


def test_the_session_cookie_is_secure_when_the_site_is_https(engine, clock, rsps):
    site = Site(engine, clock, rsps, public_base_url="https://tipjar.example")

    header = cookie_header(site.client.get("/claim/start", base_url="https://tipjar.example"))

    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_the_account_page_sends_a_signed_out_visitor_to_the_claim_page(site):
    response = site.client.get("/me")

    assert response.status_code in (302, 303)
    assert response.headers["Location"].endswith("/claim")


def test_signing_out_ends_the_session(site):
    site.sign_in(CAROL.user_id, "carol")
    assert site.client.get("/me").status_code == 200

    site.post("/logout")

    assert site.client.get("/me").status_code == 303
    assert "account_id" not in site.session()


def test_a_planted_session_does_not_survive_sign_in(site):
    site.client.get("/claim")
    with site.client.session_transaction() as planted:
        planted["csrf"] = "attacker-knows-this"
    site.sign_in(CAROL.user_id, "carol")

    assert site.session().get("csrf") != "attacker-knows-this"


def test_the_access_token_is_kept_nowhere(site, engine, caplog):
    caplog.set_level(logging.DEBUG)
    site.fund(ALICE, "5.00")
    site.tip(ALICE, CAROL, "1.00", "tweet-1")

    page = site.sign_in(CAROL.user_id, "carol")
    me = site.client.get("/me")

    (token,) = site.x.issued_tokens
    with engine.connect() as conn:
        dump = "\n".join(
            repr(row) for table in metadata.sorted_tables for row in conn.execute(select(table))
        )
    assert "€0.90" in page.get_data(as_text=True)
    assert token not in dump
    assert token not in repr(site.session())
    assert token not in page.get_data(as_text=True) + me.get_data(as_text=True)
    assert token not in caplog.text
    assert CLIENT_SECRET not in caplog.text and SECRET_KEY not in caplog.text
    assert set(site.session()) <= {
        "account_id",
        "session_version",
        "csrf",
        "_permanent",
        "_flashes",
    }


def test_handles_are_shown_escaped(site):
    site.fund(CAROL, "5.00")
    site.sign_in(CAROL.user_id, "carol")
    site.tip(CAROL, Identity.x("555", "<img src=x onerror=alert(1)>"), "1.00", "tweet-9")

    page = site.client.get("/me").get_data(as_text=True)

    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_an_unexpected_failure_shows_a_plain_page_and_logs_without_secrets(engine, rsps, caplog):
    def broken_clock():
        raise RuntimeError("the clock fell off the wall")

    site = Site(engine, broken_clock, rsps)

    response = site.client.get("/claim/start")

    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong on our side" in body
    assert "Traceback" not in body and "clock fell off" not in body
    assert "RuntimeError: the clock fell off the wall" in caplog.text
    assert SECRET_KEY not in caplog.text and CLIENT_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("POST", "/claim", 400), ("DELETE", "/claim", 400)],
)
def test_unknown_pages_and_methods_get_a_plain_page(site, method, path, status):
    response = site.client.open(path, method=method)

    assert response.status_code == status
    assert_refused(response)


def test_a_wrong_method_with_a_valid_form_gets_a_plain_405(site):
    site.sign_in(CAROL.user_id, "carol")

    response = site.client.post("/claim", data={"csrf_token": site.csrf()})

    assert response.status_code == 405
    assert "does not take that kind of request" in assert_refused(response)


def test_health_says_ok_when_the_database_answers(site):
    response = site.client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"ok": True}


def test_health_says_so_when_the_database_is_unreachable(tmp_path, clock):
    broken = make_engine(f"sqlite:///{tmp_path}/missing-dir/tipjar.db")
    app = create_app(web_settings(), engine=broken, clock=clock)

    response = app.test_client().get("/healthz")

    assert response.status_code == 503
    assert response.get_json() == {"ok": False}


def test_a_public_site_will_not_start_without_a_secret_key(engine):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(Settings(public_base_url="https://tipjar.example"), engine=engine)
    with pytest.raises(ConfigError, match="too short"):
        create_app(
            Settings(public_base_url="https://tipjar.example", secret_key="short"), engine=engine
        )


def test_a_local_site_without_a_secret_key_makes_one_and_says_so(engine, caplog):
    app = create_app(Settings(public_base_url="http://127.0.0.1:8000"), engine=engine)

    assert len(app.config["SECRET_KEY"]) >= 32
    assert "SECRET_KEY is not set" in caplog.text


def test_sign_in_without_x_credentials_explains_instead_of_failing(engine, clock, rsps):
    site = Site(engine, clock, rsps, x_client_id="", x_client_secret="")

    response = site.client.get("/claim/start")

    assert response.status_code == 503
    assert "not set up here yet" in response.get_data(as_text=True)


def test_forms_are_labelled_for_screen_readers(site):
    site.sign_in(CAROL.user_id, "carol")
    page = site.client.get("/me").get_data(as_text=True)

    for field_id in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{field_id}"' in page
