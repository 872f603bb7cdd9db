"""SMTP mailer: implements services.pushers.MailerPort with the standard library's
smtplib, run in a thread so the event loop never waits on a mail server."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

from config.schema import EmailConfig

log = logging.getLogger(__name__)


class SmtpMailer:
    def __init__(self, cfg: EmailConfig) -> None:
        assert cfg.smtp_host is not None
        self._cfg = cfg

    async def send(self, to: str, subject: str, text: str) -> bool:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self._cfg.notif_from, to, subject
        msg.set_content(text)
        try:
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as e:
            log.info("could not mail %s: %s", to, e)
            return False
        return True

    def _send(self, msg: EmailMessage) -> None:
        cfg = self._cfg
        assert cfg.smtp_host is not None
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=30) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user and cfg.smtp_password:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(msg)
