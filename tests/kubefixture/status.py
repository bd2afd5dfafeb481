"""metav1.Status bodies exactly as the kube-apiserver serialises them (Go struct field order,
compact JSON, empty fields omitted) and the constructors of k8s.io/apimachinery/pkg/api/errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def dumps(obj: Any) -> str:
    """Compact JSON like Go's encoding/json (no spaces)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None, *, typed: bool = True
) -> dict[str, Any]:
    """A Failure Status. `typed=False` gives the form written on the exec error channel, which
    json.Marshal(status.Status()) emits without kind/apiVersion (TypeMeta is empty there)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1"} if typed else {}
    body.update({"metadata": {}, "status": "Failure", "message": message, "reason": reason})
    if details:
        body["details"] = details
    if code:
        body["code"] = code
    return body


def not_found(resource: str, name: str) -> dict[str, Any]:
    # errors.NewNotFound: `pods "x" not found`, details carry the bare resource as "kind".
    return status(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def bad_request(message: str) -> dict[str, Any]:
    return status(400, "BadRequest", message)


def unauthorized() -> dict[str, Any]:
    return status(401, "Unauthorized", "Unauthorized")


def forbidden(resource: str, name: str, message: str) -> dict[str, Any]:
    # errors.NewForbidden(GroupResource{Resource: "pods"}, name, err): the subresource is only
    # part of the message, details.kind is the plain resource.
    if not resource:
        text = f"forbidden: {message}"
    elif name:
        text = f'{resource} "{name}" is forbidden: {message}'
    else:
        text = f"{resource} is forbidden: {message}"
    details = {"name": name, "kind": resource} if name else {"kind": resource} if resource else None
    return status(403, "Forbidden", text, details)


def method_not_allowed() -> dict[str, Any]:
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def expired(message: str) -> dict[str, Any]:
    # errors.NewResourceExpired: 410 Gone, reason "Expired" (no details).
    return status(410, "Expired", message)


def internal_error(cause: str, *, typed: bool = True) -> dict[str, Any]:
    # errors.NewInternalError(err): message prefixed, the bare error as the single cause.
    return status(500, "InternalError", f"Internal error occurred: {cause}", {"causes": [{"message": cause}]}, typed=typed)


def exit_code_status(code: int, message: str) -> dict[str, Any]:
    """The exec error-channel Status for a non-zero exit (remotecommand NonZeroExitCodeReason,
    one cause of type ExitCode: the StatusCause Go field `Type` is serialised as "reason")."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


SUCCESS: dict[str, Any] = {"metadata": {}, "status": "Success"}


def response(body: dict[str, Any]) -> web.Response:
    return web.Response(status=body["code"], text=dumps(body), headers={"Content-Type": "application/json"})
