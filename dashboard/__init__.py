"""The analyst dashboard and realtime page, served from the analyst views."""
