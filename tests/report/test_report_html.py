"""The HTML report: self-contained, escaped, a coloured and labelled matrix, evidence per cell."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest
from report_samples import HOSTILE, IIS, MAIL, PASSWORD, PASSWORD_B64, synthetic_model

from harness.report import html as html_report


class Page(HTMLParser):
    """Every tag with its attributes, the text of <style>/<script>, and the cell classes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.raw: dict[str, list[str]] = {"style": [], "script": []}
        self._in: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in self.raw:
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)
        else:
            self.text.append(data)

    def find(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def page_text() -> str:
    return html_report.render(synthetic_model(errors=True))


@pytest.fixture(scope="module")
def page(page_text: str) -> Page:
    parser = Page()
    parser.feed(page_text)
    parser.close()
    return parser


def test_nothing_is_loaded_from_anywhere(page: Page, page_text: str) -> None:
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    for _tag, attrs in page.tags:
        assert "src" not in attrs
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs
        assert not any(name.startswith("on") for name in attrs), attrs
    assert len(page.find("script")) == 1 and len(page.find("style")) == 1
    css = "".join(page.raw["style"])
    assert "url(" not in css and "@import" not in css
    assert "fetch(" not in "".join(page.raw["script"])
    assert "http://" not in css and "https://" not in page_text


def test_csp_allows_only_this_pages_own_style_and_script(page: Page) -> None:
    csp = next(a["content"] for a in page.find("meta") if a.get("http-equiv"))
    assert "default-src 'none'" in csp
    for kind in ("style", "script"):
        body = "".join(page.raw[kind])
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in csp


def test_hostile_server_text_is_escaped(page: Page, page_text: str) -> None:
    assert HOSTILE not in page_text
    assert "<script>alert" not in page_text and "<img" not in page_text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page_text
    assert "&amp;amp;" in page_text  # a literal "&amp;" from the server stays literal
    assert HOSTILE in "".join(page.text)  # the reader sees exactly what the server sent
    assert "550 bad\\x00\\x1b[31mred" in page_text and "\x1b" not in page_text
    assert "IIS site &lt;Require SSL&gt; &amp; reuse" in page_text


def test_the_matrix_is_coloured_and_labelled(page: Page) -> None:
    model = synthetic_model()
    cells = [
        a["class"].split() for a in page.find("td") if a.get("class", "").split()[:1] != ["num"]
    ]
    statuses = [c[0] for c in cells if c and c[0] in html_report.COLOURS]
    counts = model.counts()
    for status in ("pass", "warn", "fail", "skip", "error"):
        assert statuses.count(status) == counts[status], status
    assert ["none"] in cells  # a check that does not run against a target
    text = "".join(page.text)
    for label in ("\u2713 PASS", "\u26a0 WARN", "\u2717 FAIL", "\u2013 SKIP", "! ERROR"):
        assert label in text  # colour is never the only cue
    css = "".join(page.raw["style"])
    for status, colour in html_report.COLOURS.items():
        assert f".{status} {{ background: {colour}; }}" in css
    unexpected = [c for c in cells if "unexpected" in c]
    demo = [c for c in cells if "demo" in c]
    assert len(unexpected) == counts["unexpected"] and demo == [["fail", "demo"]]


def test_every_cell_opens_its_evidence(page: Page, page_text: str) -> None:
    ids = {a["id"] for a in page.find("details") if "result" in a.get("class", "")}
    links = [a["href"][1:] for a in page.find("a") if a.get("class") == "cell"]
    model = synthetic_model()
    assert len(links) == len(model.results) == len(ids)
    assert set(links) == ids
    anchor = links[[r.check_id for r in model.results].index("certificate-trust")]
    block = re.search(rf'<details class="result fail" id="{anchor}">(.*?)</details>',
                      page_text, re.S)
    assert block is not None
    body = block.group(1)
    for expected in (
        "Server replies", "234 AUTH TLS successful.", "TLS and trust", "TLSv1.3",
        "Certificate", "CN=ftp.example.net", "-400", "Transcript", "&gt; AUTH TLS",
        "Renew the certificate and bind the new one.", "check ended fail, expected pass",
    ):
        assert expected in body, expected


def test_targets_and_collection_errors_are_listed(page_text: str) -> None:
    assert IIS.id in page_text and MAIL.id in page_text and "ftp.example.net:21" in page_text
    assert "iis, release-42, owner=ops, site=&lt;Default FTP Site&gt;" in page_text
    assert "scenario file(s) did not load" in page_text and "polcy" in page_text


def test_no_password_in_the_page() -> None:
    text = html_report.render(synthetic_model())
    assert PASSWORD not in text and PASSWORD_B64 not in text
    assert PASSWORD in html_report.render(synthetic_model(scrub=False))


def test_a_skip_cell_and_its_evidence_say_the_kind(page_text: str) -> None:
    assert "\u2013 SKIP<small>could not run</small>" in page_text
    assert "\u2013 SKIP<small>not applicable</small>" in page_text
    assert "<dt>skip kind</dt><dd>could not run</dd>" in page_text
    assert "\u2013 SKIP 2 (1 not applicable, 1 could not run)" in page_text


def test_a_warning_is_yellow_labelled_with_its_advice_in_the_problems(page_text: str) -> None:
    assert html_report.COLOURS["warn"] == "#F0E442"  # Okabe-Ito yellow
    assert '<td class="warn"><a class="cell"' in page_text
    problems = page_text.split('<section id="problems"')[1].split("</section>")[0]
    block = re.search(r'<details class="result warn" id="r-\d+">(.*?)</details>',
                      problems, re.S)
    assert block is not None  # listed with the problems, advice in its summary line
    summary = block.group(1).split("</summary>")[0]
    assert '<span class="advice">\u2192 Offer the missing extensions' in summary
    assert "1 warning(s) passed (strict would fail them)" in page_text
    assert "\u26a0 WARN 1" in page_text
