"""Deployment as code: the Google Cloud resources of the catalog as the gcloud and bq commands
that create them, printed with ``--dry-run`` and run otherwise."""
