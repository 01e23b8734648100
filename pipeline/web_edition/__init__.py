"""The web edition: every published issue as a page of a static site, from the same draft.

A second renderer of the same content (the parsed Markdown of ``pipeline.render.markdown``),
through web templates instead of the email's MJML, with no personal data in it.
"""
