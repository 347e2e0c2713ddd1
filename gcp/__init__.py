"""Google Cloud through its client libraries: BigQuery tables, views and the one writer of rows,
and the Pub/Sub topology. The same code serves the emulators (the ``*_EMULATOR_HOST`` variables)
and Google Cloud. No Beam here (``tests/test_layers.py``)."""
