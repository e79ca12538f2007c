"""Web sessions that end (issue 15, point 6).

Sign-out is a POST with the CSRF token, so a link on another site signs nobody out; and
signing out, a claim or a refusal ends every copy of the session cookie, because the
cookie carries a version the database bumps. `/claim/start` writes nothing: a visitor
who never comes back leaves no row.
"""

from __future__ import annotations

from sqlalchemy import func, select

from escrow.ledger import Identity
from escrow.schema import oauth_states
from tests.integration.test_web_support import Site

CAROL = Identity.x("2001", "carol")
COOKIE = "tipjar_session"


def copy_of_cookie(site: Site, client=None):
    """A second browser holding a copy of `client`'s session cookie, as a thief would."""
    value = (client or site.client).get_cookie(COOKIE).value
    thief = site.browser()
    thief.set_cookie(COOKIE, value, domain="localhost")
    return thief


def oauth_rows(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(oauth_states)).scalar_one())


def test_a_get_to_logout_signs_nobody_out(site):
    site.sign_in(CAROL.user_id, "carol")

    answer = site.client.get("/logout")

    assert answer.status_code == 405
    assert site.client.get("/me").status_code == 200


def test_a_logout_post_without_the_csrf_token_signs_nobody_out(site):
    site.sign_in(CAROL.user_id, "carol")

    answer = site.client.post("/logout", data={})

    assert answer.status_code == 400
    assert site.client.get("/me").status_code == 200


def test_a_cookie_copied_before_sign_out_no_longer_opens_the_account_page(site):
    site.sign_in(CAROL.user_id, "carol")
    thief = copy_of_cookie(site)
    assert thief.get("/me").status_code == 200

    site.post("/logout")

    answer = thief.get("/me")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/claim")


def test_a_new_claim_ends_every_session_opened_before_it(site):
    site.sign_in(CAROL.user_id, "carol")
    earlier = copy_of_cookie(site)
    laptop = site.browser()

    site.sign_in(CAROL.user_id, "carol", client=laptop)

    assert earlier.get("/me").status_code == 303
    assert site.client.get("/me").status_code == 303
    assert laptop.get("/me").status_code == 200


def test_refusing_tips_ends_every_other_session_but_not_this_one(site):
    site.sign_in(CAROL.user_id, "carol")
    other = copy_of_cookie(site)

    answer = site.post("/me/refuse", confirm="yes")

    assert answer.status_code == 303
    assert site.client.get("/me").status_code == 200
    assert other.get("/me").status_code == 303


def test_five_hundred_anonymous_sign_in_starts_leave_no_row(site):
    for _ in range(500):
        assert site.client.get("/claim/start").status_code == 302

    assert oauth_rows(site) == 0


def test_a_finished_sign_in_leaves_one_row_and_its_replay_is_refused(site):
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")
    replay = copy_of_cookie(site)

    assert site.client.get(callback).status_code == 303
    answer = replay.get(callback)

    assert oauth_rows(site) == 1
    assert answer.status_code == 400
    assert "already used" in answer.get_data(as_text=True)
    assert "account_id" not in site.session(replay)
