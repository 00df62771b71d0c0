"""A document as one printable HTML page (Chinese, A4) for a centre that reads, not imports.

Built from the stored document Bundle.  Section narratives are XHTML from the store; since a
Composition can also come from a client, they are passed through a small allow-list (tables,
paragraphs, lists; no attributes, no scripts) before they reach a browser.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser
from typing import Any

from hub.services.feedback.document import patient_name

_ALLOWED = frozenset(
    {"div", "p", "br", "b", "i", "em", "strong", "span", "ul", "ol", "li",
     "table", "thead", "tbody", "tr", "th", "td", "h3", "h4"}
)  # fmt: skip
_VOID = frozenset({"br"})
_DROP_CONTENT = frozenset({"script", "style"})

STYLE = """
@page { size: A4; margin: 18mm 16mm; }
body { font-family: "Noto Serif CJK SC", "Source Han Serif SC", "SimSun", serif;
       font-size: 10.5pt; color: #000; max-width: 180mm; margin: 0 auto; }
h1 { font-size: 16pt; text-align: center; margin: 0 0 4mm; }
.meta { display: grid; grid-template-columns: 1fr 1fr; gap: 1mm 8mm; margin-bottom: 4mm;
        border-bottom: 1px solid #000; padding-bottom: 2mm; }
h2 { font-size: 12pt; border-left: 3pt solid #000; padding-left: 2mm; margin: 5mm 0 2mm;
     break-after: avoid; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 0.5pt solid #555; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
tr { break-inside: avoid; }
.status { font-weight: bold; }
footer { margin-top: 8mm; font-size: 9pt; border-top: 1px solid #000; padding-top: 2mm; }
@media screen { body { margin: 10mm auto; } }
"""


class _Clean(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._skip += 1
        elif tag in _ALLOWED and not self._skip:
            self.out.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self._skip = max(self._skip - 1, 0)
        elif tag in _ALLOWED and tag not in _VOID and not self._skip:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(escape(data))


def clean(fragment: str) -> str:
    parser = _Clean()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.out)


def _name(resource: dict[str, Any] | None, fallback: str = "") -> str:
    return str((resource or {}).get("name") or fallback)


def render(bundle: dict[str, Any]) -> str:
    entries = bundle.get("entry") or []
    comp = entries[0]["resource"]
    by_ref = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in entries
    }
    patient = by_ref.get(comp["subject"]["reference"])
    author = by_ref.get((comp.get("author") or [{}])[0].get("reference", ""))
    addressee = next(
        (
            x["valueReference"]["reference"]
            for x in comp.get("extension") or ()
            if x.get("url", "").endswith("feedback-addressee")
        ),
        "",
    )
    period = next(iter(comp.get("event") or ()), {}).get("period") or {}
    status = {"final": "正式", "amended": "更正版", "entered-in-error": "已撤回"}.get(
        comp.get("status", ""), comp.get("status", "")
    )
    version = (comp.get("meta") or {}).get("versionId", "1")
    meta = [
        ("患者", patient_name(patient)),
        (
            "性别 / 出生日期",
            f"{(patient or {}).get('gender', '')} / {(patient or {}).get('birthDate', '')}",
        ),
        ("出院医院", _name(author, (comp.get("author") or [{}])[0].get("display", ""))),
        ("接收机构", _name(by_ref.get(addressee), addressee.split("/")[-1] or "未确定")),
        ("入院", period.get("start", "")),
        ("出院", period.get("end", "")),
    ]
    rows = "".join(f"<div><b>{escape(k)}：</b>{escape(str(v))}</div>" for k, v in meta)
    sections = "".join(
        f"<section><h2>{escape(s.get('title', ''))}</h2>"
        f"{clean((s.get('text') or {}).get('div', ''))}</section>"
        for s in comp.get("section") or ()
    )
    title = escape(comp.get("title", "出院小结"))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>出院小结（住院信息反馈）</h1><div class="meta">{rows}</div>'
        f"{sections}"
        f"<footer>文档 {escape(comp['id'])} · 第 {escape(str(version))} 版 · "
        f'<span class="status">{escape(status)}</span> · '
        f"由县域医共体信息平台汇总生成 · {escape(bundle.get('timestamp', ''))}</footer>"
        "</body></html>"
    )
