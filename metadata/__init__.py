"""The contracts as data: the visit JSON Schema (``visit.schema.json``), the BigQuery tables
(``tables/``) and views (``views/``), and each template's Dataflow metadata (``<name>.json``).
Read through ``clickstream.core.contract``."""
