"""The visit simulator (lab Task 3.1): realistic visits, rate-held publishing to Pub/Sub, or JSON
lines for the batch migration. ``visits`` generates, ``publisher`` sends, ``cli`` is the
``clickstream simulate`` command."""
