"""The ``clickstream`` command: one module per command (``main`` assembles them)."""
