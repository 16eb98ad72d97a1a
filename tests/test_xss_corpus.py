"""Every pattern of the webmail XSS and remote-content corpus (tests/xss_corpus/) comes out of the
sanitiser with nothing that runs and nothing that loads from another host.

A .html file is a message's HTML body; a .eml file is a whole message (encodings and
charsets included). The output is parsed again and checked element by element, with
remote images hidden (the default) and shown (only <img src> may then be remote).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.domain.rendering import render_message

CORPUS = Path(__file__).parent / "xss_corpus"
CASES = sorted(p for p in CORPUS.iterdir() if p.suffix in {".html", ".eml"})

# None of these may survive: they run script, load something, submit, navigate or change the base.
FORBIDDEN_TAGS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
    "textarea", "select", "isindex", "meta", "base", "link", "svg", "math", "template", "noscript", "video",
    "audio", "source", "track", "picture", "portal", "title", "animate", "set", "use", "image", "foreignobject",
}  # fmt: skip
FORBIDDEN_ATTRIBUTES = {
    "srcset", "background", "poster", "formaction", "action", "ping", "xlink:href", "data", "srcdoc", "codebase",
    "http-equiv", "id", "name", "form", "target", "download",
}  # fmt: skip
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:", "mocha:")
REMOTE = re.compile(r"(https?:|^//|\\.*//)", re.IGNORECASE)
BAD_STYLE = ("url(", "expression", "behavior", "binding", "@import", "image-set", "image(", "\\")
_CONTROLS = re.compile(r"[\x00-\x20\x7f]+")


def corpus_message(path: Path) -> bytes:
    if path.suffix == ".eml":
        return path.read_bytes()
    message = EmailMessage()
    message["From"] = "Attacker <attacker@evil.example>"
    message["To"] = "reader@example.test"
    message["Subject"] = f"XSS corpus: {path.stem}"
    message["Date"] = "Tue, 05 Mar 2024 10:11:12 +0000"
    message["Message-ID"] = f"<{path.stem}@corpus.example>"
    message.set_content("The plain version.\n")
    message.add_alternative(path.read_text(), subtype="html")
    return message.as_bytes(policy=SMTP)


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [(name, value or "") for name, value in attrs]))


def problems(html: str, *, images_shown: bool) -> list[str]:
    """What is wrong with sanitised HTML; empty when it is safe."""
    found: list[str] = []
    if re.search(r"<\s*/?\s*(script|style|iframe|svg|math|object|embed|form|meta|base|link)\b", html, re.I):
        found.append("a dangerous tag in the markup")
    parser = Elements()
    parser.feed(html)
    parser.close()
    for tag, attributes in parser.found:
        if tag in FORBIDDEN_TAGS:
            found.append(f"<{tag}>")
        for name, value in attributes:
            where = f"<{tag} {name}={value!r}>"
            compact = _CONTROLS.sub("", value).lower()
            if name.startswith("on") or name in FORBIDDEN_ATTRIBUTES:
                found.append(where)
            if compact.startswith(BAD_SCHEMES) and not (
                tag == "img" and name == "src" and re.match(r"data:image/(png|gif|jpeg|webp|bmp);", compact)
            ):
                found.append(f"script or data URL in {where}")
            remote_allowed = (tag == "a" and name == "href") or (images_shown and tag == "img" and name == "src")
            if REMOTE.search(compact) and not remote_allowed:
                found.append(f"remote URL in {where}")
            if name == "style" and any(bad in compact.replace(" ", "") for bad in BAD_STYLE):
                found.append(f"loading style in {where}")
    return found


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("images_shown", [False, True], ids=["images-hidden", "images-shown"])
@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_sanitised_output_runs_and_loads_nothing(path: Path, images_shown: bool) -> None:
    view = render_message(corpus_message(path), allow_remote_images=images_shown)
    shown = view.html if view.html is not None else ""
    assert problems(shown, images_shown=images_shown) == []


def test_the_checker_catches_what_it_looks_for() -> None:
    assert problems("<p>fine <a href='https://ok.example/'>link</a></p>", images_shown=False) == []
    assert problems("<img src='https://t.example/p.gif'>", images_shown=True) == []
    for bad in (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<a href=' java\tscript:alert(1)'>x</a>",
        "<a href='data:text/html,x'>x</a>",
        "<img src='https://t.example/p.gif'>",
        "<div style='background:url(https://t.example/b.gif)'>x</div>",
        "<table background='https://t.example/b.gif'></table>",
        "<svg><set attributeName=href to=x></set></svg>",
    ):
        assert problems(bad, images_shown=False), bad
