"""HTML as plain text, for quoting or forwarding a message that has no text/plain body.

Only the text survives: block elements become line breaks, list items get a
dash, links keep their target in brackets, and script, style, head and title
content is dropped. Nothing here renders or trusts the markup.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure", "footer"),
        *("form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre"),
        *("section", "table", "tr", "ul"),
    }
)
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hidden = 0
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.chunks.append("\n")
        elif tag in _BLOCKS:
            self.chunks.append("\n- " if tag == "li" else "\n")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
        elif tag in ("td", "th"):
            self.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS and tag != "li":
            self.chunks.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")) and not self.hidden:
                self.chunks.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data.replace("\n", " ").replace("\r", " "))


def html_to_text(markup: str) -> str:
    """The readable text of an HTML document, lines trimmed, at most one blank line in a row."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # HTMLParser is lenient, but never let a quote fail over markup
        return ""
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(parser.chunks).split("\n")]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip()
