"""Governance (lab Task 5) as code: the Dataplex data mesh (lake, raw and curated zones, their
assets, who may do what where), the curated tables' aspects, and the lineage graph of the batch
migration's runs, planned and applied with ``clickstream.gcp.plan``."""
