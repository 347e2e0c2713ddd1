"""Lab Task 4.2: the subscriber that tells you a landed file was processed, or failed.

It pulls the files-processed subscription, says each message in one line
(``core.landing.describe``), optionally mails it, then acknowledges it. A message that is not a
files-processed message is said to be unreadable and acknowledged too: retrying cannot mend it.
"""

import dataclasses
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

from google.api_core import exceptions
from google.cloud import pubsub_v1

from clickstream.core import landing, names

PULL_MAX = 10
PULL_WAIT = 1.0  # seconds a pull waits, so that a stop is seen promptly


@dataclasses.dataclass(frozen=True)
class Mail:
    """Where each line is also mailed (plain SMTP: a relay, or a local sink)."""

    recipient: str
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "clickstream@localhost"

    def send(self, line: str) -> None:
        message = EmailMessage()
        message["From"], message["To"] = self.sender, self.recipient
        message["Subject"] = f"clickstream: {line.split(':', 1)[0]}"
        message.set_content(line + "\n")
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            smtp.send_message(message)


def line_of(message: pubsub_v1.types.PubsubMessage) -> str:
    try:
        return landing.describe(landing.read_notification(message.data))
    except ValueError as error:
        return f"unreadable message {message.message_id}: {error}"


def follow(
    project: str,
    subscription: str = names.FILES_PROCESSED_SUBSCRIPTION,
    tell: Callable[[str], None] = print,
    mail: Mail | None = None,
    count: int | None = None,
) -> int:
    """Tell each message of ``subscription`` until ``count`` were told (or Ctrl-C); the number
    told. A message is acknowledged once told (and mailed)."""
    told = 0
    path = names.subscription_path(project, subscription)
    with pubsub_v1.SubscriberClient() as client:
        while count is None or told < count:
            wanted = PULL_MAX if count is None else min(PULL_MAX, count - told)
            try:
                response = client.pull(
                    subscription=path, max_messages=wanted, timeout=PULL_WAIT, retry=None
                )
            except exceptions.DeadlineExceeded:
                continue
            for received in response.received_messages:
                line = line_of(received.message)
                tell(line)
                if mail:
                    mail.send(line)
                client.acknowledge(subscription=path, ack_ids=[received.ack_id])
                told += 1
    return told
