"""Sanitising a message's HTML for display, with nh3 (the Rust `ammonia` sanitiser).

The policy is an allowlist, and what it keeps is also fenced in by the frame's
Content-Security-Policy (see web/controllers/mail/content.py), so a gap in one
is caught by the other:

- elements: nh3's defaults (text, lists, tables, images, links) plus the
  `<font>` and `<tfoot>` that mail still uses. `<script>`, `<style>`, `<title>`,
  `<template>` and `<noscript>` go with their content; everything else not allowed (forms, `<base>`,
  `<meta>`, `<iframe>`, `<object>`, `<embed>`, SVG, MathML ...) loses its tag
  and keeps only its text.
- attributes: presentation ones (align, bgcolor, width ...), never an event
  handler, `id`, `class`, `srcset` or `background`.
- URLs: links may be http, https or mailto; images may be `cid:` (rewritten to
  the caller's URL for that inline part, when the message has it), `data:`
  raster images, or http/https. Remote images (http/https) are counted and,
  unless the reader asked to see them, their `src` is dropped, so nothing is
  fetched. Relative URLs are dropped (they would point at Tributary itself).
- `style` attributes: a declaration mentioning url(), expression(), image
  functions, `-moz-binding`, `behavior`, a script scheme, a CSS escape (`\\`)
  or a comment is dropped, then nh3 keeps only allowlisted properties (no
  `position`, so mail cannot draw over the page).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3

TAGS = (set(nh3.ALLOWED_TAGS) | {"font", "tfoot"}) - {"area", "map"}
CLEAN_CONTENT_TAGS = {"script", "style", "title", "template", "noscript"}
_TABLE = {"align", "valign", "char", "charoff", "colspan", "rowspan", "headers", "scope", "nowrap"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "align", "valign", "bgcolor", "dir", "lang", "title", "width", "height", "border"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"cellpadding", "cellspacing", "summary", "frame", "rules"},
    "td": _TABLE,
    "th": _TABLE,
    "tr": _TABLE,
    "tbody": _TABLE,
    "thead": _TABLE,
    "tfoot": _TABLE,
    "col": {"span", *_TABLE},
    "colgroup": {"span", *_TABLE},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "time": {"datetime"},
    "data": {"value"},
    "bdo": {"dir"},
}
STYLE_PROPERTIES = {
    "color", "background", "background-color",
    "font", "font-family", "font-size", "font-style", "font-weight", "font-variant", "line-height",
    "letter-spacing", "word-spacing", "text-align", "text-decoration", "text-indent", "text-transform",
    "white-space", "word-break", "word-wrap", "overflow-wrap", "vertical-align", "direction", "unicode-bidi",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style",
    "border-width", "border-radius", "border-collapse", "border-spacing",
    "width", "height", "min-width", "max-width", "min-height", "max-height",
    "display", "float", "clear", "list-style-type", "list-style-position", "table-layout", "text-overflow",
    "overflow", "box-sizing",
}  # fmt: skip
URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}
LINK_SCHEMES = {"http", "https", "mailto"}
REMOTE_SCHEMES = {"http", "https"}
_FORBIDDEN_IN_STYLE = (
    "url(", "expression", "image(", "image-set(", "element(", "cross-fade(", "paint(",
    "javascript:", "vbscript:", "behavior", "binding", "@import", "\\", "/*", "<", ">",
)  # fmt: skip
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpeg|webp|bmp);", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    """HTML that is safe to show in the sandboxed frame, and how many remote images it had."""

    html: str
    remote_images: int


def url_scheme(value: str) -> str | None:
    """The scheme of a URL as a browser reads it (ignoring whitespace and controls), or None if relative."""
    match = _SCHEME.match(_INVISIBLE.sub("", value).lower())
    return match.group(1) if match else None


def clean_style(value: str) -> str | None:
    """The declarations of a style attribute that cannot load anything or run anything."""
    kept = []
    for declaration in value.split(";"):
        compact = "".join(declaration.lower().split())
        if compact and not any(bad in compact for bad in _FORBIDDEN_IN_STYLE):
            kept.append(declaration.strip())
    return "; ".join(kept) or None


def sanitize_html(
    html: str, *, allow_remote_images: bool = False, resolve_cid: Callable[[str], str | None] | None = None
) -> SanitizedHtml:
    """Sanitise an HTML body (see the module's policy).

    `resolve_cid` maps a Content-ID (without `cid:` or angle brackets) to the URL
    that serves that inline part, or None when the message has no such part.
    """
    remote = 0
    resolved: set[str] = set()

    def image_source(value: str) -> str | None:
        nonlocal remote
        scheme = url_scheme(value)
        if scheme in REMOTE_SCHEMES:
            remote += 1
            return value if allow_remote_images else None
        if scheme == "cid" and resolve_cid is not None:
            url = resolve_cid(value.strip()[4:].strip().strip("<>"))
            if url is not None:
                resolved.add(url)
            return url
        if scheme == "data" and _DATA_IMAGE.match(value.strip()):
            return value
        return None

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return clean_style(value)
        if attribute == "href":
            return value if url_scheme(value) in LINK_SCHEMES else None
        if tag == "img" and attribute == "src":
            return image_source(value)
        return value

    cleaned = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=attribute_filter,
        url_schemes=URL_SCHEMES,
        # Only the inline-part URLs made above may be relative; any other would address Tributary itself.
        url_relative=lambda url: url if url in resolved else None,
        filter_style_properties=STYLE_PROPERTIES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return SanitizedHtml(html=cleaned, remote_images=remote)
