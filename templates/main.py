"""Flex-template launcher entry point: submits the catalog spec named by CLICKSTREAM_PIPELINE
(set per image by templates/Dockerfile) with the job's parameters."""

import logging
import os
import sys

from clickstream import templates

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    templates.launch(os.environ["CLICKSTREAM_PIPELINE"], sys.argv[1:])
