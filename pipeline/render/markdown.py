"""The draft's Markdown dialect: CommonMark + tables + ``{.button}`` + ``::: callout``.

One parser, shared by the HTML writer, the plain-text writer and the checks, so all three
see exactly the same document.  Raw HTML in a draft is shown as text, not passed through:
the email's markup comes from the templates, where it is tested to survive Outlook.
"""

from __future__ import annotations

from functools import cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.attrs import attrs_plugin
from mdit_py_plugins.container import container_plugin

CALLOUT = "container_callout"


@cache
def parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.use(attrs_plugin, spans=True)
    md.use(container_plugin, name="callout")
    return md


def parse(body: str) -> SyntaxTreeNode:
    return SyntaxTreeNode(parser().parse(body))


def only_child(paragraph: SyntaxTreeNode) -> SyntaxTreeNode | None:
    """The single inline element of a paragraph (ignoring blank text around it), if any."""
    if paragraph.type != "paragraph" or not paragraph.children:
        return None
    inline = paragraph.children[0]
    items = [c for c in inline.children if not (c.type == "text" and not c.content.strip())]
    return items[0] if len(items) == 1 else None


def is_button(node: SyntaxTreeNode | None) -> bool:
    """``[Label](url){.button}`` (a link) or ``[Label]{.button}`` (a span: a button with no URL)."""
    if node is None or node.type not in ("link", "span"):
        return False
    classes = str(node.attrs.get("class", "")).split()
    return "button" in classes


def plain_text(node: SyntaxTreeNode) -> str:
    """The text of an inline subtree, without markup (labels, alt text)."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(plain_text(child) for child in node.children)
