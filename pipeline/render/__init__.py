"""Render stage: ``Issue`` -> ``CompiledEmail`` (MJML -> HTML, plain text), and the check rules."""
