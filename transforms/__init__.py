"""The Python that the Beam YAML specs in pipelines/ call, and the visit model the rest reuses."""
