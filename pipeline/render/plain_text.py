"""Markdown tree -> the plain-text part, written from the same content as the HTML.

Not a scrape of the HTML: headings are underlined, lists keep their numbers, links read
``text (url)``, buttons ``Label: url``, a callout is framed, paragraphs wrap at 76 columns
(long URLs are never broken).
"""

from __future__ import annotations

import textwrap

from markdown_it.tree import SyntaxTreeNode

from pipeline.render.markdown import CALLOUT, is_button, only_child, plain_text

WIDTH = 76
_UNDERLINE = {"h1": "=", "h2": "-", "h3": "~"}


def inline_text(node: SyntaxTreeNode) -> str:
    """Inline Markdown -> text; hard breaks become newlines."""
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "image":
            alt = plain_text(child)
            out.append(f"[{alt}]" if alt else "")
        elif kind == "link":
            label = inline_text(child)
            href = str(child.attrs.get("href", ""))
            target = href.removeprefix("mailto:")
            out.append(label if label.strip() == target or not href else f"{label} ({href})")
        else:
            out.append(inline_text(child))
    return "".join(out)


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """Wrap at WIDTH columns, keeping hard line breaks and never breaking a long URL."""
    lines = []
    for index, line in enumerate(text.split("\n")):
        wrapped = textwrap.fill(
            " ".join(line.split()),
            width=WIDTH,
            initial_indent=first if index == 0 else rest,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.append(wrapped or (first if index == 0 else rest).rstrip())
    return "\n".join(lines)


def _indent(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join(
        ((first if i == 0 else rest) + line) if line else "" for i, line in enumerate(lines)
    )


def _table(node: SyntaxTreeNode) -> str:
    rows: list[list[str]] = []
    for section in node.children:
        for row in section.children:
            rows.append(
                [
                    " ".join(inline_text(cell.children[0]).split()) if cell.children else ""
                    for cell in row.children
                ]
            )
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    lines = [
        " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def block_text(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        single = only_child(node)
        if is_button(single) and single is not None:
            label = " ".join(inline_text(single).split())
            return f"{label}: {single.attrs.get('href', '')}"
        return wrap(inline_text(node.children[0]))
    if kind == "heading":
        text = " ".join(inline_text(node.children[0]).split())
        mark = _UNDERLINE.get(node.tag)
        return f"{text}\n{mark * len(text)}" if mark else text
    if kind in ("bullet_list", "ordered_list"):
        start = int(node.attrs.get("start", 1))
        items = []
        for number, item in enumerate(node.children, start=start):
            marker = f"{number}. " if kind == "ordered_list" else "- "
            body = "\n\n".join(block_text(child) for child in item.children)
            items.append(_indent(body, marker, " " * len(marker)))
        return "\n".join(items)
    if kind == "blockquote":
        body = "\n\n".join(block_text(child) for child in node.children)
        return "\n".join(f"> {line}".rstrip() for line in body.split("\n"))
    if kind == CALLOUT:
        rule = "-" * 40
        body = "\n\n".join(block_text(child) for child in node.children)
        return f"{rule}\n{body}\n{rule}"
    if kind in ("fence", "code_block"):
        return _indent(node.content.rstrip("\n"), "    ", "    ")
    if kind == "table":
        return _table(node)
    if kind == "hr":
        return "* * *"
    return "\n\n".join(block_text(child) for child in node.children)


def body_to_text(root: SyntaxTreeNode) -> str:
    return "\n\n".join(block for block in (block_text(n) for n in root.children) if block)
