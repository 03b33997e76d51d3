"""E-mail through apprise over SMTP connections that stay open for many messages.

apprise's ``mailto://`` plugin opens a connection, builds a TLS context (the CA store loaded: about 20 ms of
CPU) and logs in for every ``notify``; ``bench/outbox.py`` measured 31.6 messages/s that way against 472.7/s
for plain smtplib over one connection. ``MailPool`` keeps apprise for everything it does well (the URL syntax
of ``CLAIMFLOW_CUSTOMER_EMAIL_URL``, the message as apprise builds it: ``NotifyEmail.prepare_emails``, and the
connection, TLS and login: ``AppriseSMTPController``) and only keeps the connection open between messages:

- one connection per SMTP server and login, opened on first use and closed by ``close`` (the delivery loop
  uses one pool per pass), after ``max_per_connection`` messages (servers limit messages per connection:
  Exchange and Gmail near 100), or after it failed;
- a message refused because the server closed an already-used connection (an idle timeout, a ``421``) is
  sent once more on a new connection; any other failure is the message's, recorded by the outbox with the
  server's reason and retried under its backoff;
- anything not plain SMTP (another apprise scheme, a PGP-signed mail) goes through ``apprise.Apprise`` as
  before.

A pool belongs to one thread.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise
from apprise.plugins.email.base import NotifyEmail, PGPMode
from apprise.plugins.email.smtp import AppriseSMTPController
from apprise.utils.parse import is_email, parse_emails

if TYPE_CHECKING:
    from tasks.outbox import Outgoing

logger = logging.getLogger("claimflow.outbox")

_POOLED_SCHEMES = frozenset({"mailto", "mailtos"})
_STALE = (smtplib.SMTPServerDisconnected, ConnectionError)


class SendError(Exception):
    """One message did not leave; ``permanent`` when its URL is not one apprise can use."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass
class _Connection:
    controller: AppriseSMTPController
    smtp: smtplib.SMTP
    sent: int = 0


def _server_key(plugin: NotifyEmail) -> tuple[Any, ...]:
    return (plugin.smtp_host, plugin.port, plugin.secure_mode, plugin.user, plugin.password,
            plugin.verify_certificate)  # fmt: skip


class MailPool:
    """Send ``Outgoing`` messages, reusing one SMTP connection per server; ``close`` when done."""

    def __init__(self, *, max_per_connection: int = 100) -> None:
        self.max_per_connection = max(1, max_per_connection)
        self._open: dict[tuple[Any, ...], _Connection] = {}
        self.connections_opened = 0

    def __enter__(self) -> MailPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for key in list(self._open):
            self._drop(key)

    def send(self, outgoing: Outgoing) -> None:
        """Deliver ``outgoing`` to each of its URLs.

        Raises:
            SendError: a URL apprise cannot use (permanent), or a server or plugin that did not take the
                message, with the reason apprise or the server gave.
        """
        for url in outgoing.urls:
            plugin = _email_plugin(url) if _scheme(url) in _POOLED_SCHEMES else None
            if plugin is not None:
                self._send_pooled(plugin, outgoing)
            else:
                _send_with_apprise(url, outgoing)

    def _send_pooled(self, plugin: NotifyEmail, outgoing: Outgoing) -> None:
        if not plugin.targets:
            raise SendError("the e-mail URL names no recipient", permanent=True)
        headers = {"X-Application": plugin.app_id, **plugin.headers, **plugin._protocol_headers(outgoing.body)}
        messages = list(
            NotifyEmail.prepare_emails(
                subject=outgoing.subject, body=outgoing.body, notify_format=plugin.resolve_format(outgoing.body_format),
                from_addr=plugin.from_addr, to=plugin.targets, cc=plugin.cc, bcc=plugin.bcc,
                reply_to=plugin.reply_to, smtp_host=plugin.smtp_host, headers=headers, names=plugin.names,
                pgp=None, pgp_mode=PGPMode.NONE, inline=plugin.inline, tzinfo=plugin.tzinfo,
            )
        )  # fmt: skip
        key = _server_key(plugin)
        for message in messages:
            self._sendmail(key, plugin, str(plugin.from_addr[1]), message.to_addrs, message.body)

    def _sendmail(self, key: tuple[Any, ...], plugin: NotifyEmail, sender: str, to: Iterable[str], body: str) -> None:
        for fresh_try in (False, True):
            connection = self._connection(key, plugin)
            reused = connection.sent > 0
            try:
                refused = connection.smtp.sendmail(sender, list(to), body)
            except smtplib.SMTPRecipientsRefused as exc:
                connection.sent += 1  # the connection is fine; the recipients are not
                raise SendError(_refused(exc.recipients)) from None
            except (smtplib.SMTPException, OSError) as exc:
                self._drop(key)
                if reused and not fresh_try and _stale(exc):
                    logger.info("SMTP connection to %s closed by the server; sending on a new one", plugin.smtp_host)
                    continue
                raise SendError(f"SMTP error from {plugin.smtp_host}: {_reason(exc)}") from None
            connection.sent += 1
            if connection.sent >= self.max_per_connection:
                self._drop(key)
            if refused:
                raise SendError(_refused(refused))
            return

    def _connection(self, key: tuple[Any, ...], plugin: Any) -> _Connection:
        connection = self._open.get(key)
        if connection is None:
            controller = AppriseSMTPController(
                host=plugin.smtp_host, port=plugin.port, secure_mode=plugin.secure_mode, user=plugin.user,
                password=plugin.password, verify_certificate=plugin.verify_certificate,
                socket_connect_timeout=plugin.socket_connect_timeout,
            )  # fmt: skip
            try:
                controller.__enter__()
            except (smtplib.SMTPException, OSError, RuntimeError, apprise.exception.AppriseException) as exc:
                raise SendError(f"could not connect to the SMTP server {plugin.smtp_host}: {_reason(exc)}") from None
            smtp: Any = controller._socket  # the open smtplib.SMTP, whose errors we want to see
            connection = self._open[key] = _Connection(controller, smtp)
            self.connections_opened += 1
        return connection

    def _drop(self, key: tuple[Any, ...]) -> None:
        connection = self._open.pop(key, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.controller.__exit__(None, None, None)


def _email_plugin(url: str) -> NotifyEmail | None:
    """apprise's plugin for a plain-SMTP ``mailto://`` URL, or ``None`` when it is something else.

    Parsing a URL costs apprise about 1.5 ms; the desk's URLs differ only in ``to=`` and the outbox id header, so
    the server's part is parsed once and each message's recipients are validated as apprise does
    (``parse_emails``, ``is_email``). A URL that names recipients in its path is parsed whole.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    to = [value for key, value in query if key.lower() == "to"]
    headers = {key[1:]: value for key, value in query if key.startswith("+")}
    rest = [(key, value) for key, value in query if key.lower() != "to" and not key.startswith("+")]
    server = _server_plugin(urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote))))
    if server is None or not to or server.targets != [(False, server.from_addr[1])]:
        plugin = apprise.Apprise.instantiate(url)
        return plugin if _plain_smtp(plugin) else None
    plugin = copy.copy(server)
    plugin.headers = {**server.headers, **headers}
    plugin.targets = []
    for recipient in parse_emails(to):
        parsed = is_email(recipient)
        if parsed:
            plugin.targets.append((parsed["name"] or False, parsed["full_email"]))
    return plugin


@lru_cache(maxsize=64)
def _server_plugin(url: str) -> NotifyEmail | None:
    plugin = apprise.Apprise.instantiate(url)
    return plugin if _plain_smtp(plugin) else None


def _plain_smtp(plugin: object) -> TypeGuard[NotifyEmail]:
    return type(plugin) is NotifyEmail and plugin.pgp_mode == PGPMode.NONE


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _stale(exc: BaseException) -> bool:
    """The server closed a connection it had kept for us (idle timeout, a per-connection limit's 421)."""
    if isinstance(exc, _STALE):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {error}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    parts = [f"{address} refused: {code} {reply.decode(errors='replace')}"
             for address, (code, reply) in recipients.items()]  # fmt: skip
    return "SMTP recipient " + "; ".join(parts)


def _send_with_apprise(url: str, outgoing: Outgoing) -> None:
    # A fresh Apprise object per message, on purpose: a plugin object that is reused throttles itself
    # (NotifyBase.request_rate_per_sec, 5.5 s between two sends of the same object).
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise SendError(f"the {outgoing.channel} channel for {outgoing.recipient} is not a valid apprise URL",
                        permanent=True)  # fmt: skip
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        result = notifier.notify(title=outgoing.subject, body=outgoing.body, body_format=outgoing.body_format)
    if not result:
        warnings = " | ".join(line for line in captured.getvalue().splitlines() if line.strip())
        raise SendError(warnings or "apprise reported failure")
