"""Alerting as code for the denial-of-service drill (lab Tasks 3.5 and 3.6): the log-based
metrics, notification channel, alert policy and dashboard, planned and applied with
``clickstream.gcp.plan`` through the Google Cloud client libraries; and the drill on the local
stack, with a local twin of the alert policy that emails a local mail server."""
