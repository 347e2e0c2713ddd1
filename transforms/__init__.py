"""The Beam transforms the YAML specs of ``pipelines/`` call (listed in
``pipelines/providers.yaml``); each transform's docstring is its user documentation."""
