"""Pod objects in the shape the kube-apiserver returns (core/v1 Pod JSON) and the status
transitions the kubelet reports: ContainerCreating -> running -> terminated/CrashLoopBackOff.
Functions mutate the pod dict in place; the store versions and copies it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

Pod = dict[str, Any]


# What a container spec may carry here (besides name and image, copied as given).
CONTAINER_KEYS = ("name", "image", "command", "args", "env", "workingDir", "securityContext", "volumeMounts")


def now() -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time marshals."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def docker_time(text: str) -> str:
    """Docker's nanosecond timestamps ('2024-01-01T10:00:00.123456789Z') to metav1.Time."""
    return text[:19] + "Z" if text and not text.startswith("0001") else now()


def new_pod(
    name: str, namespace: str, uid: str, labels: dict[str, str], annotations: dict[str, str],
    containers: list[dict[str, Any]], node: str, security_context: dict[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> Pod:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "", "creationTimestamp": now()}
    if labels:  # omitempty in ObjectMeta
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    spec_containers = []
    for c in containers:
        sc: dict[str, Any] = {"name": c["name"], "image": c["image"]}
        for key in CONTAINER_KEYS[2:]:
            if c.get(key):
                sc[key] = c[key]
        sc.update({"resources": {}, "terminationMessagePath": "/dev/termination-log",
                   "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"})
        spec_containers.append(sc)
    t = meta["creationTimestamp"]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "containers": spec_containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": node,
            "securityContext": dict(security_context or {}),
            **({"volumes": [dict(v) for v in volumes]} if volumes else {}),
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                _cond("PodReadyToStartContainers", "False", t),
                _cond("Initialized", "True", t),
                _cond("Ready", "False", t),
                _cond("ContainersReady", "False", t),
                _cond("PodScheduled", "True", t),
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": t,
            "containerStatuses": [
                {
                    "name": c["name"],
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": "",
                    "started": False,
                }
                for c in containers
            ],
            "qosClass": "BestEffort",
        },
    }


def _cond(kind: str, status: str, t: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": t}


def container_status(pod: Pod, name: str) -> dict[str, Any]:
    for cs in pod["status"]["containerStatuses"]:
        if cs["name"] == name:
            return cs
    raise KeyError(name)


def set_running(pod: Pod, name: str, docker_id: str, image_id: str, started_at: str, ip: str) -> None:
    cs = container_status(pod, name)
    cs.update(state={"running": {"startedAt": started_at}}, ready=True, started=True,
              imageID=image_id, containerID=f"docker://{docker_id}")
    if ip and not pod["status"].get("podIP"):
        pod["status"]["podIP"] = ip
        pod["status"]["podIPs"] = [{"ip": ip}]
    refresh(pod)


def _terminated(cs: dict[str, Any], exit_code: int, started_at: str, finished_at: str) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                           "startedAt": started_at, "finishedAt": finished_at, "containerID": cs.get("containerID", "")}}


def set_terminated(pod: Pod, name: str, exit_code: int, finished_at: str) -> None:
    """The container died (kubelet's PLEG saw it); the restart has not happened yet."""
    cs = container_status(pod, name)
    started = cs["state"].get("running", {}).get("startedAt", finished_at)
    cs.update(state=_terminated(cs, exit_code, started, finished_at), ready=False, started=False)
    refresh(pod)


def set_restarted(pod: Pod, name: str, docker_id: str, image_id: str, started_at: str, ip: str) -> None:
    """The kubelet started a replacement container: the dead one moves to lastState."""
    cs = container_status(pod, name)
    if "terminated" in cs["state"]:
        cs["lastState"] = {"terminated": cs["state"]["terminated"]}
    cs["restartCount"] += 1
    set_running(pod, name, docker_id, image_id, started_at, ip)


def set_crashloop(pod: Pod, name: str, exit_code: int, finished_at: str) -> None:
    """CrashLoopBackOff as the kubelet reports it: waiting with the back-off message, the last
    run in lastState, restartCount counting that run's start. Phase stays Running."""
    cs = container_status(pod, name)
    started = cs["state"].get("running", {}).get("startedAt", finished_at)
    cs["lastState"] = _terminated(cs, exit_code, started, finished_at)
    cs["restartCount"] += 1
    meta = pod["metadata"]
    cs.update(
        state={"waiting": {"reason": "CrashLoopBackOff",
                           "message": f"back-off 10s restarting failed container={name} "
                                      f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"}},
        ready=False, started=False,
    )
    refresh(pod)


def set_deleting(pod: Pod) -> None:
    pod["metadata"]["deletionTimestamp"] = now()
    pod["metadata"]["deletionGracePeriodSeconds"] = pod["spec"]["terminationGracePeriodSeconds"]


def refresh(pod: Pod) -> None:
    """Recompute phase and the Ready/ContainersReady/PodReadyToStartContainers conditions."""
    st = pod["status"]
    statuses = st["containerStatuses"]
    unready = [cs["name"] for cs in statuses if not cs["ready"]]
    if any(cs.get("containerID") for cs in statuses):
        st["phase"] = "Running"  # stays Running through restarts and CrashLoopBackOff
    t = now()
    for cond in st["conditions"]:
        kind = cond["type"]
        if kind in ("Ready", "ContainersReady"):
            want = "False" if unready else "True"
        elif kind == "PodReadyToStartContainers":
            want = "True" if st["phase"] == "Running" else "False"
        else:
            continue
        if cond["status"] != want:
            cond["status"] = want
            cond["lastTransitionTime"] = t
        for key in ("reason", "message"):
            cond.pop(key, None)
        if want == "False" and kind in ("Ready", "ContainersReady") and st["phase"] == "Running":
            cond["reason"] = "ContainersNotReady"
            cond["message"] = f"containers with unready status: [{' '.join(unready)}]"


def display_status(pod: Pod) -> str:
    """The STATUS column: kubectl's printPod logic, reduced to the states the fixture produces."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    reason = pod["status"]["phase"]
    for cs in reversed(pod["status"]["containerStatuses"]):
        state = cs["state"]
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            t = state["terminated"]
            reason = t.get("reason") or f"ExitCode:{t['exitCode']}"
    return reason
