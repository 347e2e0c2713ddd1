"""The visit simulator (lab Task 3.1): realistic visits (``visits``) and rate-held publishing to
Pub/Sub or JSON lines for the batch migration (``publisher``); ``clickstream simulate`` runs it."""
