"""Flex-template launcher entry point: submits the catalog spec named by CLICKSTREAM_PIPELINE
(set per image by templates/Dockerfile) with the job's parameters."""

import time

STARTED = time.perf_counter()  # before Beam is imported: start-up is what workers wait for

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from clickstream.pipelines import catalog  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    catalog.launch(os.environ["CLICKSTREAM_PIPELINE"], sys.argv[1:], STARTED)
