"""Server-side printing: meta.k8s.io Table responses, which kubectl asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints as-is (columns of
pkg/printers/internalversion printPod / printNamespace)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .model import Pod, display_status, parse_time

_NAME_DOC = "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
_AGE_DOC = "CreationTimestamp is a timestamp representing the server time when this object was created."

POD_COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "description": _NAME_DOC, "priority": 0},
    {"name": "Ready", "type": "string", "format": "", "description": "The aggregate readiness state of this pod for accepting traffic.", "priority": 0},
    {"name": "Status", "type": "string", "format": "", "description": "The aggregate status of the containers in this pod.", "priority": 0},
    {"name": "Restarts", "type": "string", "format": "", "description": "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", "priority": 0},
    {"name": "Age", "type": "string", "format": "", "description": _AGE_DOC, "priority": 0},
    {"name": "IP", "type": "string", "format": "", "description": "podIP address allocated to the pod.", "priority": 1},
    {"name": "Node", "type": "string", "format": "", "description": "NodeName indicates in which node this pod is scheduled.", "priority": 1},
    {"name": "Nominated Node", "type": "string", "format": "", "description": "nominatedNodeName is set when this pod preempts other pods on the node.", "priority": 1},
    {"name": "Readiness Gates", "type": "string", "format": "", "description": "If specified, all readiness gates will be evaluated for pod readiness.", "priority": 1},
]
NAMESPACE_COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "description": _NAME_DOC, "priority": 0},
    {"name": "Status", "type": "string", "format": "", "description": "The status of the namespace", "priority": 0},
    {"name": "Age", "type": "string", "format": "", "description": _AGE_DOC, "priority": 0},
]


def human_duration(since: str) -> str:
    """duration.HumanDuration, enough of it for test-length ages."""
    secs = int((datetime.now(timezone.utc) - parse_time(since)).total_seconds())
    if secs < 0:
        return "<invalid>"
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _partial(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
    # includeObject=Metadata (the default): each row carries PartialObjectMetadata.
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj["metadata"]}


def pod_row(pod: Pod, api_version: str, include: str) -> dict[str, Any]:
    statuses = pod["status"]["containerStatuses"]
    ready = sum(1 for cs in statuses if cs["ready"] and "running" in cs["state"])
    restarts = sum(cs["restartCount"] for cs in statuses)
    last = [cs["lastState"]["terminated"]["finishedAt"] for cs in statuses if "terminated" in cs.get("lastState", {})]
    restarts_cell = f"{restarts} ({human_duration(max(last))} ago)" if restarts and last else str(restarts)
    cells = [
        pod["metadata"]["name"], f"{ready}/{len(statuses)}", display_status(pod), restarts_cell,
        human_duration(pod["metadata"]["creationTimestamp"]),
        pod["status"].get("podIP") or "<none>", pod["spec"].get("nodeName") or "<none>", "<none>", "<none>",
    ]
    return _row(pod, cells, api_version, include)


def namespace_row(ns: dict[str, Any], api_version: str, include: str) -> dict[str, Any]:
    cells = [ns["metadata"]["name"], ns["status"]["phase"], human_duration(ns["metadata"]["creationTimestamp"])]
    return _row(ns, cells, api_version, include)


def _row(obj: dict[str, Any], cells: list[Any], api_version: str, include: str) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = _partial(obj, api_version)
    return row


def table(columns: list[dict[str, Any]] | None, rows: list[dict[str, Any]], rv: str, api_version: str) -> dict[str, Any]:
    return {"kind": "Table", "apiVersion": api_version, "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns, "rows": rows}
