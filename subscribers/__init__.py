"""Pub/Sub subscribers that load visits into the analyst tables as messages arrive.

``push`` is an HTTP function for Pub/Sub push deliveries (Cloud Run functions, or locally with the
Functions Framework); ``pull`` is a streaming-pull process for a managed instance group. Both parse
with the one visit model (``clickstream.core.visit``) and write through the one writer
(``clickstream.gcp.warehouse``), so a visit gets the same keys, and lands in the same tables,
whichever path loads it. No Beam here (``tests/test_layers.py``).
"""
