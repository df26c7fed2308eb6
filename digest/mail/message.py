"""Messages for one run of a digest: each distinct body rendered once, then per subscriber
only the headers and the signed links change (pure; the secret is passed in)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from digest.config import Config, DigestConfig
from digest.mail.editions import Job
from digest.mail.render import (
    PREFS_MARK,
    UNSUB_MARK,
    RenderedBody,
    Renderer,
    message_id,
    site_link,
)
from digest.models import Story
from digest.subscribers import prefs_token, unsubscribe_token


class Composer:
    """Per-run caches: one render per distinct (languages, stories, date), cheap headers."""

    def __init__(self, config: Config, dcfg: DigestConfig, secret: bytes, now: datetime):
        self.config, self.dcfg, self.secret, self.now = config, dcfg, secret, now
        self.renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender,
                                 dcfg.name)
        self.bodies: dict[tuple, RenderedBody] = {}

    def body(self, langs: Sequence[str], stories: Sequence[Story], date: str) -> RenderedBody:
        key = (tuple(langs), tuple(s.id for s in stories), date)
        body = self.bodies.get(key)
        if body is None:
            body = self.bodies[key] = self.renderer.render_digest(stories, langs, date,
                                                                  self.dcfg.name)
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
        data = self.renderer.build_message(body, email, mid, self.now, unsub, prefs)
        return data, mid, body

    def html_page(self, body: RenderedBody, email: str) -> str:
        """The body's HTML with `email`'s links in place of the markers (a preview file)."""
        unsub, prefs = self.links(email)
        return body.html.replace(UNSUB_MARK, unsub).replace(PREFS_MARK, prefs)
