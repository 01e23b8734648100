"""The draft's Markdown dialect: CommonMark + tables + ``{.button}`` + ``::: callout``.

One parser, shared by the HTML writer, the plain-text writer and the checks, so all three
see exactly the same document.  Raw HTML in a draft is shown as text, not passed through:
the email's markup comes from the templates, where it is tested to survive Outlook.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.attrs import attrs_plugin
from mdit_py_plugins.container import container_plugin

from pipeline.errors import InputError

# All the dialect makes something of: one attribute class (a button) and one container (a
# tinted box).  Any other class or container name parses and then does nothing, or is shown
# as text; `check` names these, so each is a line there, never a surprise in the inbox.
BUTTON_CLASS = "button"
CLASSES = (BUTTON_CLASS,)
CONTAINERS = ("callout",)
CALLOUT = "container_callout"
# Far deeper than any newsletter (a list in a quote in a callout is 3), far shallower than
# where the tree and its writers, which recurse, would hit Python's recursion limit: 20,000
# '*' around a word nest 10,000 emphases and used to end in a RecursionError.
MAX_DEPTH = 50
# markdown-it's own guard (20 in its commonmark preset: ten nested lists) does not fail: it
# stops parsing there and drops the rest of the draft, and `check` said ok.  Set above
# MAX_DEPTH, the parse always reaches our limit first, which is then reported with its line.
PARSER_NESTING = 2 * MAX_DEPTH


@cache
def parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "maxNesting": PARSER_NESTING})
    md.enable(["table", "strikethrough"])
    md.use(attrs_plugin, spans=True)
    for name in CONTAINERS:
        md.use(container_plugin, name=name)
    return md


def _too_deep(tokens: list[Token]) -> int | None:
    """The 0-based body line where nesting first passes MAX_DEPTH, if it does."""
    depth = 0
    line = 0
    for token in tokens:
        if token.map is not None:
            line = token.map[0]
        depth += token.nesting
        if depth > MAX_DEPTH:
            return line
        inline = depth
        for child in token.children or ():
            inline += child.nesting
            if inline > MAX_DEPTH:
                return line
    return None


def markdown_problems(body: str, *, path: Path, first_line: int) -> list[InputError]:
    """A body the writers cannot handle (nested too deeply), as a problem with its line."""
    line = _too_deep(parser().parse(body))
    if line is None:
        return []
    return [
        InputError(
            f"the Markdown here nests more than {MAX_DEPTH} levels deep (a long run of "
            "'*', '_', '>' or list markers?): simplify it",
            path=path,
            line=first_line + line,
        )
    ]


def parse(body: str) -> SyntaxTreeNode:
    tokens = parser().parse(body)
    line = _too_deep(tokens)
    if line is not None:  # load_issue reports it with the file; this is the last wall
        raise InputError(f"the Markdown nests more than {MAX_DEPTH} levels deep", line=line + 1)
    return SyntaxTreeNode(tokens)


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
    return BUTTON_CLASS in classes


def plain_text(node: SyntaxTreeNode) -> str:
    """The text of an inline subtree, without markup (labels, alt text)."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(plain_text(child) for child in node.children)
