"""The ``clickstream`` command: local stack, migration and the catalog's other front ends."""
