"""A newsletter pipeline: Markdown issue -> email (MJML/HTML + text) -> list -> provider -> ledger.

The stages live in sub-packages named for what they do: ``content`` reads a draft, ``render``
turns it into a compiled email, ``audience`` reads the list.  ``cli`` is a thin click shell.
"""

__version__ = "0.1.0"
