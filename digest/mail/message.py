"""Messages for one run of a digest: each distinct body rendered once, then per subscriber
only the headers and the signed links change (pure; the secret is passed in). Every body
links its edition's public page (View online, `Archived-At`; digest.publish.editions)."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Sequence
from datetime import datetime

from digest.config import Config, DigestConfig
from digest.mail import verp
from digest.mail.editions import Job
from digest.mail.render import RenderedBody, Renderer, message_id, personalize, site_link
from digest.models import Story
from digest.publish.editions import edition_url
from digest.subscribers import prefs_token, unsubscribe_token


def body_key(langs: Sequence[str], stories: Sequence[Story], date: str) -> tuple:
    """What makes two messages' bodies the same: the reader's languages, the stories in
    order, the edition."""
    return (tuple(langs), tuple(s.id for s in stories), date)


class Composer:
    """Per-run caches: one render per distinct (languages, stories, date), cheap headers."""

    def __init__(self, config: Config, dcfg: DigestConfig, secret: bytes, now: datetime,
                 *, sign: Callable[[bytes], bytes] | None = None):
        self.config, self.dcfg, self.secret, self.now = config, dcfg, secret, now
        self.sign = sign  # DKIM: mail/dkim.Signer.sign, passed in by the pipeline
        self.return_path = config.bounces.return_path  # VERP base; "" = no VERP
        self.renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender,
                                 dcfg.name, tag_aliases=config.tags)
        self.bodies: dict[tuple, RenderedBody] = {}
        self.rendered = 0  # bodies rendered (a body dropped and needed again counts twice)
        # With `uses` (body key -> messages it will go out in, from a planning pass), a body
        # is dropped after its last message: at 100,000 subscribers, 1,790 bodies kept to the
        # end were ~110 MB; at most ~950 are ever needed at once. A count that turns out wrong
        # (another sender changed the journal meanwhile) costs a render, never other bytes.
        self.uses: dict[tuple, int] | None = None
        # Gmail's feedback loop groups complaints by it; printable ASCII (the loader checks).
        fid = config.smtp.feedback_id
        self.feedback_header = f"Feedback-ID: {fid}\r\n".encode("ascii") if fid else b""

    def body(self, langs: Sequence[str], stories: Sequence[Story], date: str) -> RenderedBody:
        key = body_key(langs, stories, date)
        body = self.bodies.get(key)
        if body is None:
            view = edition_url(self.config.site.base_url, self.dcfg.name, date, langs)
            body = self.bodies[key] = self.renderer.render_digest(stories, langs, date,
                                                                  self.dcfg.name, view_url=view)
            self.rendered += 1
        return body

    def links(self, email: str) -> tuple[str, str]:
        """(unsubscribe URL, preferences URL) for one subscriber."""
        base = self.config.site.base_url
        return (site_link(base, "unsubscribe", unsubscribe_token(self.secret, email)),
                site_link(base, "preferences", prefs_token(self.secret, email)))

    def message(self, job: Job) -> tuple[bytes, str, RenderedBody]:
        """(message bytes, Message-ID, the shared body) for one job."""
        email = job.sub.email
        body = self.body(job.sub.languages, job.stories, job.edition)
        mid = message_id(self.dcfg.name, job.edition, email, self.renderer.domain)
        unsub, prefs = self.links(email)
        data = self.renderer.build_message(body, email, mid, self.now, unsub, prefs,
                                           self.unsubscribe_mailto(email))
        if self.feedback_header:
            data = self.feedback_header + data
        if self.sign is not None:
            data = self.sign(data)
        key = body_key(job.sub.languages, job.stories, job.edition)
        uses = self.uses
        left = uses.get(key) if uses is not None else None
        if uses is not None and left is not None and left <= 1:  # its last message: drop it
            del uses[key]
            self.bodies.pop(key, None)
            return data, mid, body
        if uses is not None and left is not None:
            uses[key] = left - 1
        if body.html and self.bodies.get(key) is body:
            # encoded now: the cache keeps the encodings, not the text (memory)
            self.bodies[key] = dataclasses.replace(body, text="", html="", encoded=body.encoded)
        return data, mid, body

    def unsubscribe_mailto(self, email: str) -> str:
        """List-Unsubscribe's mailto: the subscriber's signed address in the bounce mailbox
        with [bounces] return_path, else "" (the sender's address)."""
        if not self.return_path:
            return ""
        return (verp.unsubscribe_address(self.return_path, self.secret, email)
                + "?subject=unsubscribe")

    def envelope_sender(self, job: Job) -> str:
        """MAIL FROM: the VERP address naming this subscriber's edition with [bounces]
        return_path, else the sender's address."""
        if not self.return_path:
            return self.renderer.sender_addr
        return verp.bounce_address(self.return_path, self.secret, self.dcfg.name,
                                   job.edition, job.sub.email)

    def html_page(self, body: RenderedBody, email: str) -> str:
        """The body's HTML with `email`'s links and address in place of the markers (a
        preview file)."""
        unsub, prefs = self.links(email)
        return personalize(body.html, unsub, prefs, html.escape(email))
