"""The Argo engine for a driver that reaches the gateway by another address than the cluster does.

:class:`~workflows.engines.argo.ArgoEngine` calls functions directly at its ``gateway``; here that is the
driver's address (``FTG_GATEWAY_URL``), while :attr:`gateway`, which the driver passes to every Workflow as
its ``gateway`` parameter, is the address the steps use inside the cluster (see
:mod:`workflows.placement`).
"""

from __future__ import annotations

from typing import Any

from workflows.engines.argo import ArgoEngine


class SplitGatewayArgoEngine(ArgoEngine):
    """An :class:`ArgoEngine` whose Workflows call ``workflow_gateway``; its direct calls go to ``gateway=``.

    Args:
        *args: as :class:`ArgoEngine`.
        workflow_gateway: the gateway as the Workflow's steps reach it.
        **kwargs: as :class:`ArgoEngine`; ``gateway`` is the gateway as this process reaches it.
    """

    def __init__(self, *args: Any, workflow_gateway: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workflow_gateway = workflow_gateway.rstrip("/")

    @property
    def gateway(self) -> str:
        """The gateway the Workflow's steps call (its ``gateway`` parameter)."""
        return self._workflow_gateway

    @property
    def driver_gateway(self) -> str:
        """The gateway this process's direct calls go to."""
        return self._gateway
