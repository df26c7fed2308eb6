"""The naive baselines measured in the same run: feedgen per feed, and mail built per subscriber.

These are what a first script would do, kept honest (same stories, same ranking, same item
count, same kind of content) so the ratios say what the project's design buys.
"""

from __future__ import annotations

import html
import json
import os
import smtplib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

from feedgen.feed import FeedGenerator

from digest.config import Config
from digest.mail.editions import plan_stories
from digest.mail.render import Renderer, subject_for
from digest.models import Story, Subscriber, feed_language
from digest.publish.rank import rank


def _story_html(s: Story) -> str:
    """The whole story as HTML, every section in every language (as a feed's content)."""
    out = []
    for lang in s.languages:
        out.append(f'<div lang="{lang}"><h1>{html.escape(s.title.get(lang, ""))}</h1><ul>')
        out += [f"<li>{html.escape(b)}</li>" for b in s.tldr.get(lang, [])]
        out.append("</ul>")
        for rows in s.key_data.get(lang, []):
            out.append("<p>" + " | ".join(html.escape(c) for c in rows) + "</p>")
        out += [f"<p>{html.escape(p)}</p>" for p in s.analysis.get(lang, [])]
        out += [f"<p>{html.escape(p)}</p>" for p in s.insights.get(lang, [])]
        out += [f"<p><b>{html.escape(f.q)}</b> {html.escape(f.a)}</p>" for f in s.faq.get(lang, [])]
        out.append("</div>")
    return "".join(out)


def _feeds(stories: list[Story]) -> list[tuple[str, str, object]]:
    """(kind, name, key): 3 language feeds and one per tag."""
    tags = sorted({t for s in stories for t in s.tags})
    return [("lang", lang, lang) for lang in ("en", "zh", "all")] + [("tag", t, t) for t in tags]


def naive_feeds(config: Config, stories: list[Story], now: datetime, outdir: Path) -> int:
    """One feedgen FeedGenerator per feed, each fed by a scan of the whole store; RSS and Atom
    from feedgen, JSON Feed by hand; every file written unconditionally. Returns files written."""
    base = config.site.base_url.rstrip("/")
    written = 0
    for i, (kind, name, key) in enumerate(_feeds(stories)):
        if kind == "lang":
            sel = [s for s in stories if key == "all" or any(feed_language(c) == key for c in s.languages)]
        else:
            sel = [s for s in stories if key in s.tags]
        top = rank(sel, now, config.rank)[: config.feeds.items]
        fg = FeedGenerator()
        fg.id(f"{base}/feeds/{i}")
        fg.title(f"{config.site.title} — {name}")
        fg.link(href=f"{base}/feeds/{i}.xml", rel="self")
        fg.link(href=base + "/", rel="alternate")
        fg.description(config.site.description)
        fg.language("zh" if key == "zh" else "en")
        items = []
        for r in top:
            s = r.story
            lang = s.text_in(key) if kind == "lang" and key != "all" else None
            lang = lang or s.languages[0]
            link = f"{base}/stories/{s.id}.html"
            content = _story_html(s)
            summary = " ".join(s.tldr.get(lang, []))
            fe = fg.add_entry(order="append")
            fe.id(f"urn:digest:{s.id}")
            fe.title(s.title.get(lang, s.id))
            fe.link(href=link)
            fe.description(summary)
            fe.content(content, type="html")
            fe.published(s.published)
            fe.updated(s.updated)
            for t in s.tags:
                fe.category(term=t)
            items.append({"id": f"urn:digest:{s.id}", "url": link, "title": s.title.get(lang),
                          "summary": summary, "content_html": content,
                          "date_published": s.published.isoformat(), "tags": s.tags})
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / f"{i}.rss").write_bytes(fg.rss_str(pretty=True))
        (outdir / f"{i}.atom").write_bytes(fg.atom_str(pretty=True))
        jf = {"version": "https://jsonfeed.org/version/1.1", "title": name, "items": items}
        (outdir / f"{i}.json").write_text(json.dumps(jf, ensure_ascii=False, indent=1), "utf-8")
        written += 3
    return written


def read_tree(root: Path) -> list[tuple[str, bytes]]:
    """Every file a publish left under `root` (relpath, bytes), its own temp/staging dir and
    lock excluded (the manifest is in: the publisher writes it too)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".digest-tmp")
        for name in sorted(filenames):
            if name == ".digest-lock":
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out.append((os.path.relpath(path, root), f.read()))
    return out


def write_tree(files: list[tuple[str, bytes]], dst: Path) -> int:
    """The bare write loop: per file a temp file beside it, then `os.replace` (directories
    made as they come). Returns files written."""
    made: set[str] = set()
    root = str(dst)
    for rel, data in files:
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return len(files)


def naive_message(config: Config, renderer: Renderer, sub: Subscriber, ranked: list[Story],
                  now: datetime) -> bytes:
    """One subscriber's digest the naive way: the project's own templates and CSS inlining
    rendered for this subscriber alone (no reuse), then a MIME message from the email library."""
    dcfg = config.digests[0]
    date = now.date().isoformat()
    stories = plan_stories(ranked, (), sub.tags, dcfg.max_stories, config.tags)
    body = renderer.render_digest(stories, sub.languages, date, dcfg.name)
    msg = EmailMessage()
    msg["Subject"] = subject_for(dcfg.subject, sub.languages, date)
    msg["From"] = config.smtp.sender
    msg["To"] = sub.email
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain="localhost")
    msg["List-Unsubscribe"] = f"<{config.site.base_url}unsubscribe?t=x>"
    msg.set_content(body.text)
    msg.add_alternative(body.html, subtype="html")
    return msg.as_bytes(policy=SMTP)


def naive_send(config: Config, subs: list[Subscriber], stories: list[Story], now: datetime) -> tuple[int, int]:
    """Per subscriber: render, inline CSS, build a message, send it over a new SMTP connection.
    Returns (messages sent, total bytes)."""
    dcfg = config.digests[0]
    renderer = Renderer(config.site.base_url, dcfg.subject, config.smtp.sender, dcfg.name)
    ranked = [r.story for r in rank(stories, now, config.rank)]
    sent = size = 0
    for sub in subs:
        data = naive_message(config, renderer, sub, ranked, now)
        with smtplib.SMTP(config.smtp.host, config.smtp.port, timeout=config.smtp.timeout) as smtp:
            smtp.sendmail("digest@localhost", [sub.email], data)
        sent += 1
        size += len(data)
    return sent, size
