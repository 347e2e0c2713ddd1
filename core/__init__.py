"""The core contract: the visit model, the visit and table definitions of ``metadata/``, and the
names every path shares. Pure Python: no Beam, no Google Cloud client (``tests/test_layers.py``)."""
