"""Flex-template launcher entry point: submits the catalog spec named by CLICKSTREAM_PIPELINE
(set per image by templates/Dockerfile) with the job's parameters."""

import logging
import os
import sys

from clickstream.pipelines import catalog

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    catalog.launch(os.environ["CLICKSTREAM_PIPELINE"], sys.argv[1:])
