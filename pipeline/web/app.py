"""Settings -> a Flask application (the app factory), and its theme and templates.

Templates: the project's ``templates/web/`` first, file by file, then the built-in ones in
``pipeline/web/templates/`` (a Jinja ``ChoiceLoader``, as for the email), so a practice can
restyle one page without copying the rest.  Pages use the ``[theme]`` colours and type.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import jinja2
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from pipeline.config import Settings, load_settings
from pipeline.ledger.start_record import records_folder
from pipeline.messages.secret import load_secret
from pipeline.web.subscriptions import Subscriptions

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
EXTENSION = "newsletter"
# A signup form is a few hundred bytes; the one-click POST is 26.  Anything much bigger is
# not for us (413), and never read into memory.
MAX_BODY = 16 * 1024


def create_app(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    trusted_proxies: int = 0,
    log: Callable[[str], None] = lambda line: None,
    background: bool = True,
) -> Flask:
    """The app for this project.

    ``trusted_proxies``: how many reverse proxies (nginx) stand in front and set
    X-Forwarded-For / -Proto; the client's address is then taken from that header (0: the
    socket's peer).  ``background``: start the thread that applies queued list changes
    (off only for tests that apply them by hand)."""
    environ = os.environ if environ is None else environ
    app = Flask(__name__, template_folder=None, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, MAX_FORM_MEMORY_SIZE=MAX_BODY)
    app.jinja_loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(settings.templates_dir / "web"),
            jinja2.FileSystemLoader(BUILTIN_TEMPLATES),
        ]
    )
    secret = load_secret(
        settings.state_dir, environ, sent_records=records_folder(settings.newsletters_dir)
    )
    subscriptions = Subscriptions(settings, secret, environ, log=log)
    app.extensions[EXTENSION] = subscriptions
    app.config["NEWSLETTER_SETTINGS"] = settings

    @app.context_processor
    def theme() -> dict[str, object]:
        return {"settings": settings, "theme": settings.theme}

    from pipeline.web.front_door import EXTENSION as FRONT_DOOR
    from pipeline.web.front_door import FrontDoorPlan
    from pipeline.web.one_click import OneClick
    from pipeline.web.views import one_click_pages, public
    from pipeline.web.webhooks import webhooks_blueprint

    app.register_blueprint(public)
    app.register_blueprint(webhooks_blueprint(settings, environ, log=log, background=background))
    # In front of Flask, inside ProxyFix (which sets the client's address first).  Its pages
    # are rendered now: a page rendered at the first opt-out made the first burst wait.
    one_click = OneClick(app.wsgi_app, subscriptions, one_click_pages(app))
    app.wsgi_app = one_click  # type: ignore[method-assign]
    # ``make_server`` answers the one-click POST before any of this (its front door).
    app.extensions[FRONT_DOOR] = FrontDoorPlan(one_click, trusted_proxies)
    if trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies, x_host=trusted_proxies
        )
    if background:
        subscriptions.start()
    return app


def from_config(config: str | None = None, proxies: int = 0) -> Flask:
    """For WSGI servers that import an app by name (gunicorn ``'pipeline.web:from_config()'``):
    the settings found from the current folder, or from ``config``; log lines on stderr;
    the queue applied and the emails in hand sent when the process exits."""
    settings = load_settings(Path(config) if config else None)
    app = create_app(
        settings,
        trusted_proxies=proxies,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    atexit.register(subscriptions_of(app).close)
    return app


def subscriptions_of(app: Flask) -> Subscriptions:
    found = app.extensions[EXTENSION]
    assert isinstance(found, Subscriptions)
    return found
