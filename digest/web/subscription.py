"""Subscribe (double opt-in), confirm, preferences and RFC 8058 one-click unsubscribe.

Form values are checked by digest.subscribers (the rules the CLI and CSV import use too) and
every change goes through the pipeline's Subscriptions handle (WebState.subscriptions)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from digest import i18n, subscribers
from digest.errors import DigestError
from digest.mail import tokens
from digest.models import Subscriber
from digest.web.guards import (
    CSRF_COOKIE,
    BadRequest,
    csrf_token,
    csrf_valid,
    first,
    mailbox_key,
    new_browser_id,
    read_form,
    same_origin,
    valid_browser_id,
)
from digest.web.pages import WebState
from digest.web.responses import error_page, render, set_csrf_cookie, state_of

log = logging.getLogger("digest.web")

_TAG_SPLIT = re.compile(r"[,，、\n]")  # as digest.subscribers.parse_tags splits


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
    st = state_of(request)
    token, fresh = await run_in_threadpool(_new_csrf, request)
    choices = await run_in_threadpool(st.tag_choices)
    return render(request, "subscribe.html", csrf=token, cookie=fresh, form={}, tag_choices=choices)


Errors = dict[str, tuple[str, str]]  # field → (message, hint), the rules' English words


def _digests(form: dict[str, list[str]], known: Sequence[str]) -> tuple[str, ...]:
    """The digests ticked (the form offers them when config.toml has more than one)."""
    chosen = subscribers.parse_digests(form.get("digests", []), known)
    if not chosen:
        raise DigestError("digests: choose at least one digest",
                          "to receive none, use the unsubscribe link in any digest")
    return chosen


def _check_fields(form: dict[str, list[str]], *, email: bool,
                  known: Sequence[str] = ()) -> tuple[dict[str, Any], Errors]:
    """Each field through its rule in digest.subscribers (the CLI's rules): the values, and
    for each refused field its message and hint, shown beside that field. `known`: the
    [[digests]] names; with two or more the form offers them (`digests` then is a value)."""
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("languages", lambda: subscribers.parse_languages(form.get("languages", []))),
        ("tags", lambda: subscribers.parse_tags(form.get("tags", []))),
        ("timezone", lambda: subscribers.check_timezone(first(form, "timezone"))),
    ]
    if len(known) > 1:
        checks.append(("digests", lambda: _digests(form, known)))
    if email:
        checks.insert(0, ("email", lambda: subscribers.normalize_email(first(form, "email"))))
    values: dict[str, Any] = {}
    errors: Errors = {}
    for name, check in checks:
        try:
            values[name] = check()
        except DigestError as e:
            errors[name] = (i18n.field_message(e.message), e.hint)
    return values, errors


def _typed(form: dict[str, list[str]]) -> dict[str, Any]:
    """What was sent, to show again in a re-shown form (bounded: the body limit already is)."""
    tags = [t.strip() for v in form.get("tags", []) for t in _TAG_SPLIT.split(v) if t.strip()]
    return {"email": first(form, "email"), "languages": form.get("languages", []),
            "tags": list(dict.fromkeys(tags))[:60], "timezone": first(form, "timezone"),
            "digests": form.get("digests", [])[:20]}


async def _reshow(request: Request, form: dict[str, list[str]], status: int, **ctx: Any) -> Response:
    """The subscribe form again with what was typed and a fresh token: a visitor without
    script (no token yet) or with an expired page just submits once more."""
    st = state_of(request)
    token, fresh = await run_in_threadpool(_new_csrf, request)
    choices = await run_in_threadpool(st.tag_choices)
    return render(request, "subscribe.html", status, csrf=token, cookie=fresh, form=_typed(form),
                  tag_choices=choices, **ctx)


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
    except BadRequest as e:
        return await _reshow(request, form, e.status, problem=e.message, hint=e.hint)
    known = _known(st)
    values, errors = _check_fields(form, email=True, known=known)
    if errors:
        return await _reshow(request, form, 400, errors=errors)
    # `created` is this request's time (see subscribers.subscribed)
    new = subscribers.new_subscriber(values["email"], values["languages"], values["tags"],
                                     values["timezone"], "pending", st.clock(),
                                     digests=values.get("digests"), known_digests=known)
    task = None
    # A throttled address changes nothing: no new choices, no new request time (which would
    # void the link its owner was just sent), no mail.
    if not st.per_email.take(mailbox_key(new.email)):  # a+x@d and a@d: one mailbox
        sub = await run_in_threadpool(st.subscriptions.subscribe, new)
        task = BackgroundTask(_send_confirmation, st, sub)
    # The same words whether the address is new, pending, active or throttled: no enumeration.
    resp = render(request, "message.html", kind="subscribed", heading="sent.title", email=new.email,
                  message="sent.message", hint="sent.hint",
                  values={"days": tokens.CONFIRM_LIFETIME.days})
    resp.background = task
    return resp


def _known(st: WebState) -> tuple[str, ...]:
    return tuple(d.name for d in st.config.digests)


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


def _languages(st: WebState, email: str) -> list[str] | None:
    """The languages a link's subscriber reads (their pages are in those), None if unknown."""
    sub = st.subscriptions.get(email)
    return list(sub.languages) if sub is not None and sub.languages else None


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
    langs = await run_in_threadpool(_languages, st, email)
    if outcome == "gone":
        return render(request, "message.html", kind="gone", heading="gone.title",
                      message="gone.message", hint="gone.hint", langs=langs)
    if outcome == "stale":
        return render(request, "message.html", 400, kind="error", heading="stale.title",
                      message="stale.message", hint="stale.hint", langs=langs)
    if outcome == "ready":
        return render(request, "message.html", kind="confirm", heading="confirm.title",
                      email=email, confirm_token=token, message="confirm.message",
                      hint="confirm.hint", values={"email": email}, langs=langs)
    links = await run_in_threadpool(_links, st, email)
    heading = "confirmed.title" if outcome == "confirmed" else "confirmed.already"
    return render(request, "message.html", kind="confirmed", heading=heading, email=email,
                  message="confirmed.message", langs=langs, **links)


async def preferences(request: Request) -> Response:
    st = state_of(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "prefs", token)
    saved, errors, typed = False, {}, None
    if request.method == "POST":
        _check_post(request)
        form = await read_form(request, st.body_timeout)
        _check_post(request, form)
        values, errors = _check_fields(form, email=False, known=_known(st))
        if errors:
            typed = _typed(form)
        else:
            saved = await run_in_threadpool(st.subscriptions.update_preferences, email,
                                            values["languages"], values["tags"], values["timezone"],
                                            values.get("digests"))
    sub = await run_in_threadpool(st.subscriptions.get, email)
    if sub is None or sub.status in subscribers.GONE:
        return render(request, "message.html", kind="gone", heading="notsub.title",
                      message="notsub.message", hint="gone.hint",
                      langs=sub.languages if sub is not None else None)
    csrf_tok, fresh = await run_in_threadpool(_new_csrf, request)
    links = await run_in_threadpool(_links, st, email)
    choices = await run_in_threadpool(st.tag_choices)
    form_values = typed or {"languages": sub.languages, "tags": sub.tags, "timezone": sub.timezone,
                            "digests": list(st.config.digests_of(sub.digests))}
    # The page speaks the stored languages: a refused form changes nothing yet.
    return render(request, "preferences.html", 400 if errors else 200, cookie=fresh,
                  csrf=csrf_tok, token=token, sub=sub, saved=saved, errors=errors,
                  form=form_values, tag_choices=choices, langs=sub.languages, **links)


async def unsubscribe(request: Request) -> Response:
    """GET only shows the button (mail scanners prefetch links); POST unsubscribes at once.

    The RFC 8058 POST comes from the mailbox provider's servers, with no cookie and no
    Origin: the signed token in the URL is the whole authority, so no CSRF token is asked.
    The answer is 200 with no redirect and no cookie, and repeating it changes nothing."""
    st = state_of(request)
    token = request.query_params.get("t", "")
    email = await run_in_threadpool(_token_email, st, "unsubscribe", token)
    langs = await run_in_threadpool(_languages, st, email)
    if request.method != "POST":
        return render(request, "unsubscribe.html", token=token, email=email, done=False, langs=langs)
    form = await read_form(request, st.body_timeout)
    if first(form, "List-Unsubscribe") != "One-Click":
        raise BadRequest("The unsubscribe request is missing List-Unsubscribe=One-Click.", 400,
                         "Use the button on the unsubscribe page.")
    await run_in_threadpool(st.subscriptions.unsubscribe, email)
    return render(request, "unsubscribe.html", token=token, email=email, done=True, langs=langs)
