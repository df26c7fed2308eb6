"""The subscription pages' interface strings in English and Chinese, and which to show; pure.

`negotiate(accept_language, known_langs)` picks the reader's languages: a subscriber's own
(from a mail link's token) when known, narrowed by the browser's `Accept-Language` when the
subscriber reads both; else `Accept-Language` alone; else both. `texts(langs, key)` gives a
string in each chosen language, with the `lang` code to mark it by. `translate` turns the
English messages of the rules (digest.subscribers) and the web guards into Chinese.
Chinese is Simplified, in the polite register (您) the story pages use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

UI_LANGS = ("en", "zh")  # interface languages, in the order a bilingual page shows them
HTML_LANG = {"en": "en", "zh": "zh-Hans"}  # the `lang` attribute for each

# key → {"en": ..., "zh": ...}; `{name}` placeholders are filled by `texts(..., name=...)`.
STRINGS: dict[str, dict[str, str]] = {
    "nav.subscribe": {"en": "Subscribe", "zh": "订阅"},
    "nav.feeds": {"en": "Feeds", "zh": "订阅源"},
    "front_page": {"en": "Go to the front page", "zh": "前往首页"},
    # the subscribe form (GET /subscribe, index.html)
    "subscribe.title": {"en": "Subscribe to the digest", "zh": "订阅摘要"},
    "subscribe.intro": {"en": "A daily email with the top AI stories in English, Chinese or both. "
                              "We send one confirmation email first.",
                        "zh": "每天一封邮件，汇集最重要的 AI 新闻，可选英文、中文或双语。"
                              "我们会先发送一封确认邮件。"},
    "form.section": {"en": "Daily email", "zh": "每日邮件"},
    "form.email": {"en": "Email", "zh": "邮箱"},
    "form.languages": {"en": "Languages", "zh": "语言"},
    "form.tags": {"en": "Tags", "zh": "标签"},
    "form.tags_help": {"en": "Pick the topics you want; with none picked, every story comes.",
                       "zh": "请选择您关注的主题；不选则接收全部内容。"},
    "form.tags_count": {"en": "{n} stories", "zh": "{n} 篇"},
    "form.digests": {"en": "Digests", "zh": "摘要"},
    "form.digests_help": {"en": "Which emails you receive; each brings the best stories since "
                                "its last issue.",
                          "zh": "选择要接收的邮件；每份都汇集自上一期以来最好的内容。"},
    "form.timezone": {"en": "Time zone", "zh": "时区"},
    "form.timezone_help": {"en": "The digest arrives at its set time in this zone.",
                           "zh": "摘要按此时区的设定时间送达。"},
    "form.subscribe": {"en": "Subscribe", "zh": "订阅"},
    "form.fix": {"en": "Please correct the marked fields.", "zh": "请修改标出的内容。"},
    "form.invalid": {"en": "This value is not valid.", "zh": "此项无效。"},
    "tz.other": {"en": "Other", "zh": "其他"},
    "tz.Africa": {"en": "Africa", "zh": "非洲"},
    "tz.America": {"en": "Americas", "zh": "美洲"},
    "tz.Antarctica": {"en": "Antarctica", "zh": "南极洲"},
    "tz.Arctic": {"en": "Arctic", "zh": "北极"},
    "tz.Asia": {"en": "Asia", "zh": "亚洲"},
    "tz.Atlantic": {"en": "Atlantic", "zh": "大西洋"},
    "tz.Australia": {"en": "Australia", "zh": "澳大利亚"},
    "tz.Europe": {"en": "Europe", "zh": "欧洲"},
    "tz.Indian": {"en": "Indian Ocean", "zh": "印度洋"},
    "tz.Pacific": {"en": "Pacific", "zh": "太平洋"},
    # check your inbox
    "sent.title": {"en": "Check your inbox", "zh": "请查收邮件"},
    "sent.message": {"en": "If the address can receive mail, a confirmation link is on its way.",
                     "zh": "如果该地址能够收信，确认链接已经发出。"},
    "sent.hint": {"en": "Open the link in that email to start receiving the digest. "
                        "It works for {days} days.",
                  "zh": "请打开邮件中的链接，开始接收摘要。链接 {days} 天内有效。"},
    # confirm / confirmed
    "confirm.title": {"en": "Confirm your subscription", "zh": "确认订阅"},
    "confirm.message": {"en": "Start sending the digest to {email}?", "zh": "开始向 {email} 发送摘要吗？"},
    "confirm.hint": {"en": "Nothing is sent until you press the button.",
                     "zh": "在您按下按钮之前，我们不会发送任何邮件。"},
    "confirm.button": {"en": "Confirm", "zh": "确认订阅"},
    "confirmed.title": {"en": "You are subscribed", "zh": "订阅成功"},
    "confirmed.already": {"en": "You were already subscribed", "zh": "您已订阅"},
    "confirmed.message": {"en": "The digest will arrive at the time set for your time zone.",
                          "zh": "摘要将在您所在时区的设定时间送达。"},
    "confirmed.prefs": {"en": "Change languages, tags or time zone", "zh": "修改语言、标签或时区"},
    "gone.title": {"en": "This link was already used", "zh": "此链接已使用过"},
    "gone.message": {"en": "This address is not subscribed any more.", "zh": "该地址已不再订阅。"},
    "gone.hint": {"en": "To subscribe again, use the form on the front page.",
                  "zh": "如需重新订阅，请使用首页上的表单。"},
    "stale.title": {"en": "This link was replaced", "zh": "此链接已被取代"},
    "stale.message": {"en": "This link is not valid: a newer confirmation link was sent to this address.",
                      "zh": "此链接已失效：我们已向该地址发送了更新的确认链接。"},
    "stale.hint": {"en": "Use the link in the newest confirmation email, or subscribe again from "
                         "the front page.",
                   "zh": "请使用最新一封确认邮件中的链接，或从首页重新订阅。"},
    "notsub.title": {"en": "Not subscribed", "zh": "未订阅"},
    "notsub.message": {"en": "This address does not receive the digest.", "zh": "该地址不接收摘要。"},
    # preferences
    "prefs.title": {"en": "Preferences", "zh": "偏好设置"},
    "prefs.heading": {"en": "Your digest", "zh": "您的摘要"},
    "prefs.address": {"en": "Address", "zh": "邮箱地址"},
    "prefs.pending": {"en": "not confirmed yet", "zh": "尚未确认"},
    "prefs.saved": {"en": "Saved", "zh": "已保存"},
    "prefs.save": {"en": "Save", "zh": "保存"},
    "prefs.leave": {"en": "No longer want the digest?", "zh": "不想再收到摘要？"},
    "prefs.unsubscribe": {"en": "Unsubscribe", "zh": "退订"},
    # unsubscribe
    "unsub.title": {"en": "Unsubscribe", "zh": "退订"},
    "unsub.question": {"en": "Stop sending the digest to {email}?", "zh": "停止向 {email} 发送摘要吗？"},
    "unsub.button": {"en": "Unsubscribe", "zh": "退订"},
    "unsub.done": {"en": "You are unsubscribed", "zh": "您已退订"},
    "unsub.done_message": {"en": "{email} will get no further digests.", "zh": "{email} 将不再收到摘要。"},
    "unsub.again": {"en": "Changed your mind? You can subscribe again from the front page.",
                    "zh": "改变主意了？您可以从首页重新订阅。"},
    # error pages: titles by status
    "error.400": {"en": "This link or form is not valid", "zh": "链接或表单无效"},
    "error.403": {"en": "Request refused", "zh": "请求被拒绝"},
    "error.404": {"en": "Not found", "zh": "找不到页面"},
    "error.405": {"en": "Method not allowed", "zh": "不支持此请求方式"},
    "error.408": {"en": "Request timed out", "zh": "请求超时"},
    "error.413": {"en": "Too much data", "zh": "数据过多"},
    "error.415": {"en": "Unsupported form", "zh": "不支持的表单格式"},
    "error.429": {"en": "Too many requests", "zh": "请求过于频繁"},
    "error.500": {"en": "Something went wrong", "zh": "出错了"},
    "error.other": {"en": "Error", "zh": "错误"},
}

# English messages from elsewhere (digest.subscribers rules, digest.mail.tokens, the web's
# guards and handlers) → Chinese. Full matches; groups fill `{0}`, `{1}`.
_PHRASES: tuple[tuple[str, str], ...] = (
    # digest.subscribers (the field prefix "email: " is removed before matching)
    (r"line breaks are not allowed in an email address", "邮箱地址中不能有换行。"),
    (r"(.+) is not a valid email address", "{0} 不是有效的邮箱地址。"),
    (r"use a plain ASCII address like name@example\.com \(no display name, no spaces\)",
     "请使用普通的 ASCII 地址，例如 name@example.com（不带显示名称，不含空格）。"),
    (r"unknown language (.+)", "未知的语言 {0}。"),
    (r"choose at least one language", "请至少选择一种语言。"),
    (r"choose at least one digest", "请至少选择一份摘要。"),
    (r"unknown digest (.+)", "未知的摘要 {0}。"),
    (r"choose among the digests config\.toml defines: (.+)", "可选的摘要：{0}。"),
    (r'use "en", "zh" or "en,zh"', "请选择 English、中文，或两者都选。"),
    (r"the tag (.+) holds a control character", "标签 {0} 含有控制字符。"),
    (r"type tags as plain text, separated by commas", "请以纯文本填写标签，用逗号分隔。"),
    (r"the tag (.+) is longer than (\d+) characters", "标签 {0} 超过了 {1} 个字符。"),
    (r"shorten it; tags match story tags and their slugs", "请缩短它；标签用于匹配文章的标签及其别名。"),
    (r"(\d+) tags, at most (\d+) are allowed", "选了 {0} 个标签，最多只能选 {1} 个。"),
    (r"keep the ones that matter most; no tags at all means every story",
     "请保留最重要的几个；不选标签即接收全部内容。"),
    (r"unknown time zone (.+)", "未知的时区 {0}。"),
    (r"use an IANA name such as UTC, Europe/Berlin or Asia/Shanghai",
     "请使用 IANA 时区名，例如 UTC、Europe/Berlin 或 Asia/Shanghai。"),
    # link tokens (digest.mail.tokens) inside "This link is not valid: …."
    (r"This link is not valid: the link has expired\.", "此链接无效：链接已过期。"),
    (r"This link is not valid: the link token is malformed\.", "此链接无效：链接不完整或已损坏。"),
    (r"This link is not valid: the link token is not valid for this page\.", "此链接无效：它不属于此页面。"),
    (r"This link is not valid: .*", "此链接无效。"),
    (r"Use the newest link you received, or subscribe again from the front page\.",
     "请使用您收到的最新链接，或从首页重新订阅。"),
    # the web (digest.web)
    (r"This form was sent from another site\.", "此表单是从其他网站提交的。"),
    (r"Open the page at (\S+) and submit the form from there\.", "请打开 {0} 上的页面，从那里提交表单。"),
    (r"The form has expired or was not sent from this site\.", "表单已过期，或不是从本站提交的。"),
    (r"Reload the page \(cookies must be allowed for this site\) and submit it again\.",
     "请重新加载页面（需允许本站使用 Cookie），然后再次提交。"),
    (r"You have sent this form many times in a short while\.", "您在短时间内提交了太多次。"),
    (r"Wait (\d+) seconds and try again\.", "请等待 {0} 秒后重试。"),
    (r"The unsubscribe request is missing List-Unsubscribe=One-Click\.",
     "退订请求缺少 List-Unsubscribe=One-Click。"),
    (r"Use the button on the unsubscribe page\.", "请使用退订页面上的按钮。"),
    (r"There is no such page here\.", "这里没有这个页面。"),
    (r"Start from the front page\.", "请从首页开始浏览。"),
    (r"The server could not finish this request\.", "服务器未能完成此请求。"),
    (r"Try again in a minute\.", "请过一分钟再试。"),
    (r"The request body is larger than (\d+) KB\.", "请求内容超过了 {0} KB。"),
    (r"Forms here are small; send less data\.", "本站的表单都很小，请少发送一些数据。"),
    (r"The request body arrived too slowly\.", "请求内容传输过慢。"),
    (r"This address takes a form submission\.", "此地址只接受表单提交。"),
    (r"The form could not be read\.", "无法读取表单。"),
    (r"Content-Length is not a number", "Content-Length 不是数字。"),
    (r"Method Not Allowed", "不支持此请求方式。"),
)
_COMPILED = tuple((re.compile(p), zh) for p, zh in _PHRASES)
_FIELD_PREFIX = re.compile(r"(?:[\w.:-]*: )?(?:email|languages|tags|timezone): ")


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """`Accept-Language` as (range, q) pairs, best first (equal q: the order given).
    Malformed parts are skipped; q outside 0..1 is clamped."""
    out: list[tuple[str, float]] = []
    for part in (header or "")[:1000].split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if not name or not re.fullmatch(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", name):
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = -1.0
        if q >= 0:
            out.append((name.lower(), q))
    return sorted(out, key=lambda pair: -pair[1])  # sorted() is stable


def ui_language(tag: str) -> str | None:
    """The interface language for a language range: `zh`, `zh-CN`, `zh-Hans`, `zh-TW` → zh;
    `en`, `en-GB` → en; anything else (and `*`) → None."""
    primary = tag.lower().split("-", 1)[0]
    return primary if primary in UI_LANGS else None


def negotiate(accept_language: str | None, known_langs: Sequence[str] | None = None) -> tuple[str, ...]:
    """The languages to show a page in, as a tuple of `UI_LANGS` (one, or both).

    `known_langs`, a subscriber's languages, bound the choice: a zh-only subscriber reads
    Chinese whatever the browser says. Among the allowed languages the best-rated one in
    `accept_language` wins; when it names none of them (or is absent), all allowed are shown."""
    known = {ui_language(code) for code in known_langs or ()}
    allowed = tuple(code for code in UI_LANGS if code in known) or UI_LANGS
    if len(allowed) == 1:
        return allowed
    refused = set()
    for tag, q in parse_accept_language(accept_language):
        code = ui_language(tag)
        if code is None or code not in allowed:
            continue
        if q <= 0:
            refused.add(code)
        elif code not in refused:
            return (code,)
    rest = tuple(code for code in allowed if code not in refused)
    return rest or allowed


def html_lang(langs: Sequence[str]) -> str:
    """The `<html lang>` of a page in `langs`: its one language, else English (each part of
    a bilingual page carries its own `lang`)."""
    return HTML_LANG[langs[0]] if len(langs) == 1 and langs[0] in HTML_LANG else "en"


def texts(langs: Sequence[str], key: str, **values: object) -> list[tuple[str, str]]:
    """[(lang attribute, text)] for `key` in each of `langs`; `{name}` filled from `values`.
    An unknown key is a KeyError (a typo in a template fails its test, not silently)."""
    entry = STRINGS[key]
    return [(HTML_LANG[code], entry[code].format(**values)) for code in langs]


def plain(langs: Sequence[str], key: str, **values: object) -> str:
    """`texts` as one string (for <title> and attributes): "Subscribe · 订阅"."""
    return " · ".join(text for _, text in texts(langs, key, **values))


def field_message(text: str) -> str:
    """A rule's message without the field name it starts with ("email: …"): shown beside
    the field it is about."""
    return _FIELD_PREFIX.sub("", text, count=1)


def translate(text: str, lang: str) -> str | None:
    """`text` (an English message from the rules or the web) in `lang`; None when there is
    no translation (the caller shows the English, marked `lang="en"`)."""
    if lang == "en":
        return text
    for pattern, zh in _COMPILED:
        m = pattern.fullmatch(text)
        if m:
            return zh.format(*m.groups())
    return None


def message(langs: Sequence[str], text: str) -> list[tuple[str, str]]:
    """[(lang attribute, text)] for a free English message in each of `langs`; an untranslated
    one appears once, in English."""
    out: list[tuple[str, str]] = []
    for code in langs:
        said = translate(text, code)
        if said is None:
            said, code = text, "en"
        if (HTML_LANG[code], said) not in out:
            out.append((HTML_LANG[code], said))
    return out


@cache
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """IANA zones for a picker: ((region, ((zone, label), ...)), ...), regions in
    alphabetical order and "other" (UTC) last; legacy aliases (US/Eastern, EST5EDT, Etc/…)
    are left out. A label is the zone without its region, underscores as spaces."""
    from zoneinfo import available_timezones

    regions: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(available_timezones()):
        region, _, place = name.partition("/")
        if f"tz.{region}" not in STRINGS or not place:
            continue
        regions.setdefault(region, []).append((name, place.replace("_", " ").replace("/", " / ")))
    groups = [(region, tuple(zones)) for region, zones in sorted(regions.items())]
    groups.append(("other", (("UTC", "UTC"),)))
    return tuple(groups)
