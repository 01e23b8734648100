"""Markdown tree -> the MJML elements of the issue body (inside the layout's one column).

Text runs become ``<mj-text>`` with inline styles (MJML's own CSS inlining is not available in
mrml, and inline styles are what Gmail and Outlook keep); a button paragraph becomes
``<mj-button>`` (a table-based, Outlook-safe button); an image alone in its paragraph becomes a
responsive ``<mj-image>``; a callout becomes a tinted table cell with an accent bar, inside
``<mj-text>``, its buttons the same table ``<mj-button>`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from markupsafe import escape

from pipeline.config import Theme
from pipeline.render.markdown import CALLOUT, is_button, only_child, parser, plain_text


def element_styles(theme: Theme) -> dict[str, str]:
    """Inline CSS per HTML tag inside text blocks, from the theme."""
    accent, muted = theme.accent, theme.muted_color
    heading = f"color:{theme.text_color};font-weight:bold;line-height:1.3;"
    return {
        "p": "margin:0 0 16px 0;",
        "h1": heading + "font-size:28px;margin:28px 0 14px 0;",
        "h2": heading + f"font-size:23px;margin:30px 0 14px 0;color:{accent};",
        "h3": heading + "font-size:20px;margin:26px 0 10px 0;",
        "h4": heading + "font-size:18px;margin:22px 0 8px 0;",
        "h5": heading + "font-size:17px;margin:20px 0 8px 0;",
        "h6": heading + "font-size:17px;margin:20px 0 8px 0;",
        "a": f"color:{accent};text-decoration:underline;",
        # Outlook desktop ignores padding on lists: the indent is a margin, which it keeps.
        "ul": "margin:0 0 16px 28px;padding:0;",
        "ol": "margin:0 0 16px 28px;padding:0;",
        "li": "margin:0 0 8px 0;padding:0;",
        "blockquote": f"margin:0 0 16px 0;padding:4px 0 4px 16px;border-left:4px solid {accent};"
        f"color:{muted};font-style:italic;",
        "table": "border-collapse:collapse;width:100%;margin:0 0 16px 0;",
        "th": "border:1px solid #d5dedc;padding:8px;text-align:left;background:#f5f8f7;",
        "td": "border:1px solid #d5dedc;padding:8px;text-align:left;vertical-align:top;",
        "img": "max-width:100%;height:auto;border:0;",
        "code": "font-family:Menlo,Consolas,monospace;font-size:15px;background:#f0f3f2;"
        "padding:1px 4px;",
        "pre": "font-family:Menlo,Consolas,monospace;font-size:14px;background:#f0f3f2;"
        "padding:12px;white-space:pre-wrap;margin:0 0 16px 0;",
        "hr": "border:0;border-top:1px solid #d5dedc;margin:24px 0;",
    }


def _style_tokens(tokens: Sequence[Token], styles: dict[str, str]) -> None:
    for token in tokens:
        if token.nesting >= 0 and token.tag in styles:
            own = str(token.attrs.get("style", ""))
            # Markdown's own style (table column alignment) comes last so it wins.
            token.attrSet("style", styles[token.tag] + own)
        if token.children:
            _style_tokens(token.children, styles)


def render_html(nodes: Sequence[SyntaxTreeNode], styles: dict[str, str]) -> str:
    """Standard Markdown HTML for these blocks, with inline styles."""
    tokens: list[Token] = []
    for node in nodes:
        tokens.extend(node.to_tokens())
    _style_tokens(tokens, styles)
    md = parser()
    return str(md.renderer.render(tokens, md.options, {}))


def _render_inline(node: SyntaxTreeNode, styles: dict[str, str]) -> str:
    tokens = node.to_tokens() if node.type != "inline" else []
    if node.type == "inline":
        for child in node.children:
            tokens.extend(child.to_tokens())
    _style_tokens(tokens, styles)
    md = parser()
    renderer: Any = md.renderer  # the HTML renderer; the protocol type lacks renderInline
    return str(renderer.renderInline(tokens, md.options, {}))


def _button_html(link: SyntaxTreeNode, theme: Theme, styles: dict[str, str]) -> str:
    """A button inside a callout, where <mj-button> cannot go: the same table mj-button writes.

    Outlook desktop ignores padding on a link, so a bare padded link collapses to its text;
    the padding goes on the cell too (``mso-padding-alt``), which Outlook does honour.
    """
    label = "".join(_render_inline(child, styles) for child in link.children)
    href = escape(str(link.attrs.get("href", "")))
    accent, font = theme.accent, escape(theme.font_family)
    return (
        '<table border="0" cellpadding="0" cellspacing="0" role="presentation" width="100%">'
        '<tr><td style="padding:4px 0 20px 0;">'
        '<table border="0" cellpadding="0" cellspacing="0" role="presentation" '
        'style="border-collapse:separate;line-height:100%;"><tr>'
        f'<td align="center" bgcolor="{accent}" role="presentation" valign="middle" '
        f'style="border:none;border-radius:6px;mso-padding-alt:14px 24px;background:{accent};">'
        f'<a href="{href}" target="_blank" style="display:inline-block;background:{accent};'
        f"color:#ffffff;font-family:{font};font-size:17px;font-weight:bold;line-height:1.3;"
        "margin:0;text-decoration:none;padding:14px 24px;mso-padding-alt:0px;"
        f'border-radius:6px;">{label}</a></td></tr></table></td></tr></table>'
    )


def _callout_html(inner: str, theme: Theme) -> str:
    """A callout: its own tint and an accent bar on the left, inset from the edges.

    A table cell, because Outlook desktop draws background and border on cells reliably and
    on divs not at all.
    """
    tint, accent = theme.callout_background, theme.accent
    return (
        '<table border="0" cellpadding="0" cellspacing="0" role="presentation" width="100%" '
        'style="border-collapse:collapse;"><tr>'
        f'<td bgcolor="{tint}" style="background:{tint};border-left:4px solid {accent};'
        f'padding:20px 20px 4px 20px;">{inner}</td></tr></table>'
    )


def body_to_mjml(root: SyntaxTreeNode, theme: Theme) -> str:
    """The issue body as a sequence of MJML column elements."""
    styles = element_styles(theme)
    elements: list[str] = []
    pending: list[SyntaxTreeNode] = []

    def flush() -> None:
        if pending:
            elements.append(f"<mj-text>{render_html(pending, styles)}</mj-text>")
            pending.clear()

    for node in root.children:
        single = only_child(node)
        if is_button(single) and single is not None and single.type == "link":
            flush()
            label = "".join(_render_inline(child, styles) for child in single.children)
            href = escape(str(single.attrs.get("href", "")))
            elements.append(
                f'<mj-button href="{href}" title="{escape(plain_text(single))}">{label}</mj-button>'
            )
        elif single is not None and single.type == "image":
            flush()
            src = escape(str(single.attrs.get("src", "")))
            alt = escape(plain_text(single))
            elements.append(f'<mj-image src="{src}" alt="{alt}" padding="8px 24px 16px 24px" />')
        elif node.type == CALLOUT:
            flush()
            inner = []
            for child in node.children:
                child_single = only_child(child)
                if is_button(child_single) and child_single is not None:
                    inner.append(_button_html(child_single, theme, styles))
                else:
                    inner.append(render_html([child], styles))
            elements.append(
                '<mj-text padding="8px 24px 24px 24px" css-class="callout">'
                f"{_callout_html(''.join(inner), theme)}</mj-text>"
            )
        elif node.type == "hr":
            flush()
            elements.append('<mj-divider border-width="1px" border-color="#d5dedc" />')
        else:
            pending.append(node)
    flush()
    return "\n".join(elements)
