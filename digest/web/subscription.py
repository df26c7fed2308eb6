"""Subscribe (double opt-in), confirm, preferences and RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest.mail import tokens
from digest.models import FEED_LANGUAGES, Subscriber
from digest.pipeline.sending import CONFIRM_TTL, send_confirmation
from digest.web.guards import (
    CSRF_COOKIE,
    BadRequest,
    clean_email,
    clean_languages,
    clean_tags,
    clean_timezone,
    csrf_token,
    csrf_valid,
    first,
    new_browser_id,
    read_form,
    same_origin,
    valid_browser_id,
)
from digest.web.pages import WebState, error_page, render, set_csrf_cookie, state_of

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


def _subscribe(st: WebState, email: str, langs: list[str], tags: list[str], tz: str) -> Subscriber:
    """Create or refresh a pending subscriber; the subscriber to mail a confirm link to.

    Anyone can post this form for any address, so: an active subscriber's choices never
    change here (only through their signed preferences link; they just get a confirmation
    mail whose page leads there); a pending or unsubscribed one takes the new choices, which
    count only once confirmed from that mailbox, and `created` becomes this request's time,
    so every confirm link mailed before it stops working (`_confirm_state`): an old link
    cannot activate someone else's later choices."""
    store, now = st.store, st.clock()
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None:
            sub = Subscriber(email=email, languages=langs, tags=tags, timezone=tz, status="pending",
                             created=now, secret=secrets.token_hex(16))
            store.add_subscriber(sub)
        elif sub.status != "active":
            sub = store.update_subscriber(email, languages=langs, tags=tags, timezone=tz, status="pending",
                                          created=now, secret=secrets.token_hex(16))
    return sub


async def _send_confirmation(st: WebState, sub: Subscriber) -> None:

    try:
        await run_in_threadpool(send_confirmation, st.config, st.store, sub, st.clock())
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
        email = clean_email(first(form, "email"))
        langs = clean_languages(form.get("languages", []))
        tags = clean_tags(form.get("tags", []))
        tz = clean_timezone(first(form, "timezone"))
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
    if not st.per_email.take(email.lower()):
        sub = await run_in_threadpool(_subscribe, st, email, langs, tags, tz)
        task = BackgroundTask(_send_confirmation, st, sub)
    # The same words whether the address is new, pending, active or throttled: no enumeration.
    resp = render(request, "message.html", kind="subscribed",
                  heading="Check your inbox", email=email,
                  message="If the address can receive mail, a confirmation link is on its way.",
                  hint=f"Open the link in that email to start receiving the digest. It works for {CONFIRM_TTL.days} days.")
    resp.background = task
    return resp


def _token_email(st: WebState, purpose: str, token: str) -> str:
    return _token(st, purpose, token)[0]


def _token(st: WebState, purpose: str, token: str) -> tuple[str, datetime | None]:
    try:
        return tokens.decode(st.secret, purpose, token, st.clock())
    except tokens.TokenError as e:
        raise BadRequest(f"This link is not valid: {e.message}.", 400,
                         "Use the newest link you received, or subscribe again from the front page.") from e


def _links(st: WebState, email: str) -> dict[str, str]:

    return {
        "prefs_token": tokens.sign(st.secret, "prefs", email, None),
        "unsubscribe_token": tokens.sign(st.secret, "unsubscribe", email, None),
    }


def _confirm_state(st: WebState, email: str, expires: datetime | None, *, activate: bool) -> str:
    """"gone", "already", "stale" (a newer subscribe request voided this link), "ready"
    (GET: show the button) or "confirmed" (POST: activated now)."""
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None or sub.status in ("unsubscribed", "bounced"):
            return "gone"  # an old link must not undo a later unsubscribe
        if sub.status == "active":
            return "already"
        issued = tokens.confirm_issued(expires)
        # Whole seconds: the token carries its expiry in seconds.
        if issued is None or int(issued.timestamp()) < int(sub.created.timestamp()):
            return "stale"
        if not activate:
            return "ready"
        store.update_subscriber(email, status="active", confirmed=st.clock())
        return "confirmed"


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
    outcome = await run_in_threadpool(lambda: _confirm_state(st, email, expires, activate=post))
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
            langs = clean_languages(form.get("languages", []))
            tags = clean_tags(form.get("tags", []))
            tz = clean_timezone(first(form, "timezone"))
        except BadRequest as e:
            problem, hint = e.message, e.hint
        else:
            saved = await run_in_threadpool(_update_prefs, st, email, langs, tags, tz)
    sub = await run_in_threadpool(st.store.get_subscriber, email)
    if sub is None or sub.status in ("unsubscribed", "bounced"):
        return render(request, "message.html", kind="gone", heading="Not subscribed",
                      message="This address does not receive the digest.",
                      hint="To subscribe again, use the form on the front page.")
    csrf_tok, fresh = await run_in_threadpool(_new_csrf, request)
    links = await run_in_threadpool(_links, st, email)
    return render(request, "preferences.html", 400 if problem else 200, cookie=fresh,
                  csrf=csrf_tok, token=token, sub=sub, saved=saved, problem=problem, hint=hint,
                  languages=FEED_LANGUAGES, **links)


def _update_prefs(st: WebState, email: str, langs: list[str], tags: list[str], tz: str) -> bool:
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is None or sub.status in ("unsubscribed", "bounced"):
            return False
        store.update_subscriber(email, languages=langs, tags=tags, timezone=tz)
        return True


def _unsubscribe(st: WebState, email: str) -> None:
    store = st.store
    with store.transaction():
        sub = store.get_subscriber(email)
        if sub is not None and sub.status != "unsubscribed":
            store.update_subscriber(email, status="unsubscribed")


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
    await run_in_threadpool(_unsubscribe, st, email)
    return render(request, "unsubscribe.html", token=token, email=email, done=True)
