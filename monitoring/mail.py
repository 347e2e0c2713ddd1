"""Email for the local drill: a real SMTP server on this machine (aiosmtpd) that keeps what it
receives in a Maildir, and the sending side (smtplib), which works with any SMTP server."""

import mailbox
import smtplib
from email.message import EmailMessage
from pathlib import Path

from clickstream.core import ports

SENDER = "clickstream-alerts@localhost"
HOST = "127.0.0.1"


def send(server: tuple[str, int], recipients: tuple[str, ...], subject: str, body: str) -> None:
    """Send a plain-text email through the SMTP server at ``server`` (host, port)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, ", ".join(recipients), subject
    message.set_content(body)
    with smtplib.SMTP(*server, timeout=10) as smtp:
        smtp.send_message(message)


def received(maildir: Path) -> list[mailbox.MaildirMessage]:
    """The messages in a Maildir, oldest first."""
    return sorted(mailbox.Maildir(maildir, create=False), key=lambda message: message.get_date())


class MailServer:
    """An SMTP server on loopback that delivers every message into the Maildir ``maildir``;
    a context manager (started on entry, on a free port unless ``port`` is given)."""

    def __init__(self, maildir: Path, port: int = 0):
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox

        for folder in ("tmp", "new", "cur"):  # a Maildir, also in an existing empty directory
            (maildir / folder).mkdir(parents=True, exist_ok=True)
        self.maildir = maildir
        self.port = port or ports.free_port()
        self.controller = Controller(Mailbox(maildir), hostname=HOST, port=self.port)

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def __enter__(self) -> "MailServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
