"""The web app of ``newsletter serve``: signup, confirm, unsubscribe, health, and
provider webhooks (webhooks.py).

``create_app(settings)`` builds it (Flask's application factory), so tests build one per case
and any WSGI server can import the same thing: ``pipeline.web:create_app``.
"""

from pipeline.web.app import create_app, from_config

__all__ = ["create_app", "from_config"]
