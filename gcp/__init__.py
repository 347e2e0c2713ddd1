"""Google Cloud through its client libraries: BigQuery tables, views and the one writer of rows,
the Pub/Sub topology, the batch migration's lineage, and the plan/apply engine. The same code
serves the emulators (the ``*_EMULATOR_HOST`` variables) and Google Cloud. No Beam here
(``tests/test_layers.py``)."""
