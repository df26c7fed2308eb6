"""Subscribe (double opt-in), confirm, preferences and RFC 8058 one-click unsubscribe.

Form values are checked by digest.subscribers (the rules the CLI and CSV import use too) and
every change goes through the pipeline's Subscriptions handle (WebState.subscriptions)."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest import subscribers
from digest.errors import DigestError
from digest.mail import tokens
from digest.models import FEED_LANGUAGES, Subscriber
from digest.web.guards import (
    CSRF_COOKIE,
    BadRequest,
    csrf_token,
    csrf_valid,
    first,
    new_browser_id,
    read_form,
    same_origin,
    valid_browser_id,
)
from digest.web.pages import WebState
from digest.web.responses import error_page, render, set_csrf_cookie, state_of

log = logging.getLogger("digest.web")


def _new_csrf(request: Request) -> tuple[str, str | None]:
    """A fresh form token for this browser, and the new browser id to set as its cookie when
    it has none yet (None: the cookie stays as it is, so other open tabs keep working)."""
    browser = valid_browser_id(request.cookies.get(CSRF_COOKIE))
    fresh = None
    if not browser:
        browser = fresh = new_browser_id()
    return csrf_token(state_of(request).secret, browser, time.time()), fresh


def _check_post(request: Request, form: dict[str, list[str]] | None = None) -> None:
    st = state_of(request)
    if not same_origin(request.headers, st.config.site.base_url, request.url.scheme):
        raise BadRequest("This form was sent from another site.", 403,
                         f"Open the page at {st.config.site.base_url} and submit the form from there.")
    if form is not None and not csrf_valid(st.secret, first(form, "csrf"),
                                           request.cookies.get(CSRF_COOKIE, ""), time.time()):
        raise BadRequest("The form has expired or was not sent from this site.", 403,
                         "Reload the page (cookies must be allowed for this site) and submit it again.")


async def csrf(request: Request) -> Response:
    """The static index.html cannot carry a per-visitor token, so its script fetches one here
    (setting the SameSite=Strict browser-id cookie the token is bound to, if absent). Without
    script, the form still works from GET /subscribe, which is rendered with a token."""
    token, fresh = await run_in_threadpool(_new_csrf, request)
    resp = JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})
    if fresh:
        set_csrf_cookie(resp, state_of(request).config, fresh)
    return resp


async def subscribe_form(request: Request) -> Response:
    token, fresh = await run_in_threadpool(_new_csrf, request)
    return render(request, "subscribe.html", csrf=token, cookie=fresh, form={}, languages=FEED_LANGUAGES)


def _new_subscriber(st: WebState, form: dict[str, list[str]]) -> Subscriber:
    """The form as a pending subscriber whose `created` is this request's time (see
    subscribers.subscribed); a value the rules refuse re-shows the form (400)."""
    try:
        return subscribers.new_subscriber(first(form, "email"), form.get("languages", []),
                                          form.get("tags", []), first(form, "timezone"),
                                          "pending", st.clock())
    except DigestError as e:
        raise BadRequest(e.message, 400, e.hint) from e


async def _send_confirmation(st: WebState, sub: Subscriber) -> None:
    try:
        await run_in_threadpool(st.subscriptions.send_confirmation, sub, st.clock())
    except Exception:
        # The visitor already has their page; the operator gets the reason in the log.
        log.exception("confirmation mail to a subscriber failed")


async def subscribe(request: Request) -> Response:
    st = state_of(request)
    _check_post(request)
    ip = request.client.host if request.client else "?"
    wait = st.per_ip.take(ip)
    if wait:
        resp = error_page(request, 429, "You have sent this form many times in a short while.",
                          f"Wait {int(wait) + 1} seconds and try again.")
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    form = await read_form(request, st.body_timeout)
    try:
        _check_post(request, form)
        new = _new_subscriber(st, form)
    except BadRequest as e:
        # Show the form again with what was typed and a fresh token: a visitor without
        # script (no token yet) or with an expired page just submits once more.
        token, fresh = await run_in_threadpool(_new_csrf, request)
        values = {"email": first(form, "email"), "tags": ", ".join(form.get("tags", [])),
                  "timezone": first(form, "timezone"), "languages": form.get("languages", [])}
        return render(request, "subscribe.html", e.status, csrf=token, cookie=fresh, form=values,
                      languages=FEED_LANGUAGES, problem=e.message, hint=e.hint)
    task = None
    # A throttled address changes nothing: no new choices, no new request time (which would
    # void the link its owner was just sent), no mail.
    if not st.per_email.take(new.email):
        sub = await run_in_threadpool(st.subscriptions.subscribe, new)
        task = BackgroundTask(_send_confirmation, st, sub)
    # The same words whether the address is new, pending, active or throttled: no enumeration.
    resp = render(request, "message.html", kind="subscribed",
                  heading="Check your inbox", email=new.email,
                  message="If the address can receive mail, a confirmation link is on its way.",
                  hint=f"Open the link in that email to start receiving the digest. It works for {tokens.CONFIRM_LIFETIME.days} days.")
    resp.background = task
    return resp


def _token_email(st: WebState, purpose: str, token: str) -> str:
    return _token(st, purpose, token)[0]


def _token(st: WebState, purpose: str, token: str) -> tuple[str, datetime | None]:
    try:
        return st.subscriptions.read_token(purpose, token, st.clock())
    except tokens.TokenError as e:
        raise BadRequest(f"This link is not valid: {e.message}.", 400,
                         "Use the newest link you received, or subscribe again from the front page.") from e


def _links(st: WebState, email: str) -> dict[str, str]:
    return st.subscriptions.link_tokens(email)


async def confirm(request: Request) -> Response:
    """GET (and HEAD) only show a Confirm button: mail scanners and link previews follow
    links, and must not subscribe anyone. The POST confirms; the signed link is its whole
    authority (it reached the owner's mailbox), so beyond it only same-origin is checked."""
    st = state_of(request)
    token = request.query_params.get("t", "")
    email, expires = await run_in_threadpool(_token, st, "confirm", token)
    post = request.method == "POST"
    if post:
        _check_post(request)
    # "gone" / "already" / "stale" / "ready" / "confirmed": subscribers.confirmed
    outcome = await run_in_threadpool(
        lambda: st.subscriptions.confirm(email, expires, st.clock(), activate=post))
    if outcome == "gone":
        return render(request, "message.html", kind="gone", heading="This link was already used",
                      message="This address is not subscribed any more.",
                      hint="To subscribe again, use the form on the front page.")
    if outcome == "stale":
        return render(request, "message.html", 400, kind="error", heading="This link was replaced",
                      message="This link is not valid: a newer confirmation link was sent to this address.",
                      hint="Use the link in the newest confirmation email, or subscribe again from the front page.")
    if outcome == "ready":
        return render(request, "message.html", kind="confirm", heading="Confirm your subscription",
                      email=email, confirm_token=token,
                      message=f"Start sending the digest to {email}?",
                      hint="Nothing is sent until you press the button.")
    links = await run_in_threadpool(_links, st, email)
    heading = "You are subscribed" if outcome == "confirmed" else "You were already subscribed"
    return render(request, "message.html", kind="confirmed", heading=heading, email=email,
                  message="The digest will arrive at the time set for your time zone.", **links)


async def preferences(request: Request) -> Response:
    st = state_of(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "prefs", token)
    saved, problem, hint = False, None, ""
    if request.method == "POST":
        _check_post(request)
        form = await read_form(request, st.body_timeout)
        _check_post(request, form)
        try:
            langs = subscribers.parse_languages(form.get("languages", []))
            tags = subscribers.parse_tags(form.get("tags", []))
            tz = subscribers.check_timezone(first(form, "timezone"))
        except DigestError as e:
            problem, hint = e.message, e.hint
        else:
            saved = await run_in_threadpool(st.subscriptions.update_preferences, email, langs,
                                            tags, tz)
    sub = await run_in_threadpool(st.subscriptions.get, email)
    if sub is None or sub.status in ("unsubscribed", "bounced"):
        return render(request, "message.html", kind="gone", heading="Not subscribed",
                      message="This address does not receive the digest.",
                      hint="To subscribe again, use the form on the front page.")
    csrf_tok, fresh = await run_in_threadpool(_new_csrf, request)
    links = await run_in_threadpool(_links, st, email)
    return render(request, "preferences.html", 400 if problem else 200, cookie=fresh,
                  csrf=csrf_tok, token=token, sub=sub, saved=saved, problem=problem, hint=hint,
                  languages=FEED_LANGUAGES, **links)


async def unsubscribe(request: Request) -> Response:
    """GET only shows the button (mail scanners prefetch links); POST unsubscribes at once.

    The RFC 8058 POST comes from the mailbox provider's servers, with no cookie and no
    Origin: the signed token in the URL is the whole authority, so no CSRF token is asked.
    The answer is 200 with no redirect and no cookie, and repeating it changes nothing."""
    st = state_of(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "unsubscribe", token)
    if request.method != "POST":
        return render(request, "unsubscribe.html", token=token, email=email, done=False)
    form = await read_form(request, st.body_timeout)
    if first(form, "List-Unsubscribe") != "One-Click":
        raise BadRequest("The unsubscribe request is missing List-Unsubscribe=One-Click.", 400,
                         "Use the button on the unsubscribe page.")
    await run_in_threadpool(st.subscriptions.unsubscribe, email)
    return render(request, "unsubscribe.html", token=token, email=email, done=True)
