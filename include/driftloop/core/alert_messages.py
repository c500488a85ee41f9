"""Alert messages from Jinja templates: a webhook's text, an email's subject and HTML body, each replaceable.

As the providers' notifiers take a templated ``text`` (Slack) or ``subject`` and ``html_content`` (SMTP), each
message is a Jinja template rendered with the alert as ``alert`` (``alert.kind``, ``.dataset``, ``.title``,
``.fields``, ``.links``, ``.dedupe_key``) and the filter ``fmt`` (a float to 4 significant digits, a list
joined with commas). The defaults are :data:`DEFAULT_TEMPLATES`; a file of the same name in
``DRIFTLOOP_ALERT_TEMPLATE_DIR`` replaces one (a file left out keeps its default). The HTML body is
autoescaped. An override that cannot be rendered (a syntax error, an unknown variable) is a WARNING and the
default is sent instead: a broken template never silences an alert.
"""

from __future__ import annotations

import html
import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)

WEBHOOK_TEXT = "webhook_text.txt"
EMAIL_SUBJECT = "email_subject.txt"
EMAIL_BODY = "email_body.html"
_HEADLINE = "[driftloop/{{ alert.dataset }}] {{ alert.kind }}: {{ alert.title }}"
DEFAULT_TEMPLATES = {
    WEBHOOK_TEXT: _HEADLINE,
    EMAIL_SUBJECT: _HEADLINE,
    EMAIL_BODY: (
        "<p><b>{{ alert.title }}</b></p><table>"
        "{% for name, value in alert.fields.items() %}"
        "<tr><th align='left'>{{ name }}</th><td>{{ value | fmt }}</td></tr>"
        "{% endfor %}</table>"
        "{% if alert.links %}<ul>{% for label, url in alert.links.items() %}"
        "<li><a href='{{ url }}'>{{ label }}</a></li>{% endfor %}</ul>{% endif %}"
        "<p><small>dedupe key {{ alert.dedupe_key }}</small></p>"
    ),
}
_warned_dirs: set[str] = set()


class AlertFields(Protocol):
    """What a template sees of an alert (``driftloop.core.alerts.Alert``)."""

    @property
    def kind(self) -> str:
        """Alert kind."""

    @property
    def dataset(self) -> str:
        """Dataset config name."""

    @property
    def title(self) -> str:
        """Headline."""

    @property
    def fields(self) -> dict[str, Any]:
        """Numbers and ids."""

    @property
    def links(self) -> dict[str, str]:
        """Label to URL."""

    @property
    def dedupe_key(self) -> str:
        """Names the event."""


def format_value(value: Any) -> str:
    """A field's value as text: a float to 4 significant digits, a list or tuple joined with commas."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def render_message(name: str, alert: AlertFields, template_dir: str = "") -> str:
    """Render template ``name`` (one of :data:`DEFAULT_TEMPLATES`) for ``alert``: the file of that name in
    ``template_dir`` when there is one and it renders, else the default.

    Raises:
        KeyError: ``name`` is not a known template.
    """
    if name not in DEFAULT_TEMPLATES:
        raise KeyError(f"unknown alert template {name!r}; expected one of {', '.join(DEFAULT_TEMPLATES)}")
    override = _override_path(template_dir, name)
    if override is not None:
        try:
            source = override.read_text(encoding="utf-8")
            return _environment(name.endswith(".html")).from_string(source).render(alert=alert)
        except Exception as exc:  # a broken override must not silence the alert: send the default
            log.warning(
                "alert template %s failed (%s: %s); the default %s is used",
                override,
                type(exc).__name__,
                exc,
                name,
            )
    return _default_template(name).render(alert=alert)


def _override_path(template_dir: str, name: str) -> Path | None:
    if not template_dir:
        return None
    folder = Path(template_dir)
    if not folder.is_dir():
        if template_dir not in _warned_dirs:
            _warned_dirs.add(template_dir)
            log.warning(
                "DRIFTLOOP_ALERT_TEMPLATE_DIR=%s is not a folder: alerts use the default templates",
                template_dir,
            )
        return None
    path = folder / name
    return path if path.is_file() else None


@cache
def _default_template(name: str) -> jinja2.Template:
    return _environment(name.endswith(".html")).from_string(DEFAULT_TEMPLATES[name])


@cache
def _environment(is_html: bool) -> jinja2.Environment:
    """Autoescaped for ``.html`` templates, escaping as :func:`html.escape` does (so the default body is the
    one alerts always had); plain text otherwise. Unknown variables raise instead of rendering empty."""
    import jinja2
    from markupsafe import Markup

    def escape_html(value: Any) -> Any:
        return value if isinstance(value, Markup) else Markup(html.escape(str(value)))

    options: dict[str, Any] = {"autoescape": True, "finalize": escape_html} if is_html else {}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, **options)
    env.filters["fmt"] = format_value
    return env
