"""The provider's Dataflow hook and flex-template operator, pointed at the local stack's Dataflow:
the fake Dataflow API (``clickstream.fakes.dataflow``) that ``orchestration/local_airflow.py``
serves on loopback. The provider's code runs as it is (the launch, the wait loop on
``jobs.get``, the metrics); only the API endpoint differs (``ClientOptions(api_endpoint=...)``,
which the provider's hook offers no setting for). Staged into the local DAGs folder only;
Composer runs the provider's classes."""

import functools

from airflow.providers.google.cloud.hooks.dataflow import DataflowHook
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from google.api_core.client_options import ClientOptions

POLL_SECONDS = 1  # the wait loop's interval (the provider's default: 10)


class LocalDataflowHook(DataflowHook):
    """``DataflowHook`` on the Dataflow API at ``endpoint`` (``http://127.0.0.1:PORT/``)."""

    def __init__(self, *, endpoint: str, **kwargs):
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def get_client_options(self, api_endpoint_override: str | None = None) -> ClientOptions:
        return super().get_client_options(api_endpoint_override or self.endpoint)


class LocalFlexTemplateOperator(DataflowStartFlexTemplateOperator):
    """``DataflowStartFlexTemplateOperator`` whose hook is a ``LocalDataflowHook``. Never
    deferred: the deferred wait's client speaks gRPC, which the local Dataflow does not serve,
    and no triggerer runs locally."""

    def __init__(self, *, endpoint: str, poll_sleep: int = POLL_SECONDS, **kwargs):
        super().__init__(poll_sleep=poll_sleep, deferrable=False, **kwargs)
        self.endpoint = endpoint

    @functools.cached_property
    def hook(self) -> DataflowHook:
        return LocalDataflowHook(
            endpoint=self.endpoint,
            gcp_conn_id=self.gcp_conn_id,
            poll_sleep=self.poll_sleep,
            drain_pipeline=self.drain_pipeline,
            cancel_timeout=self.cancel_timeout,
            wait_until_finished=self.wait_until_finished,
            impersonation_chain=self.impersonation_chain,
            expected_terminal_state=self.expected_terminal_state,
        )
