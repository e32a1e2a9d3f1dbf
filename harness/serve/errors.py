"""The one error an endpoint answers with: an HTTP status and the OpenAI-style JSON body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server answers with `status` and {"error": {message, type, param, code}}."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        405: "invalid_request_error",
        409: "latents_mismatch",
        413: "request_too_large",
        500: "server_error",
        503: "service_unavailable",
    }

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    @property
    def type(self) -> str:
        return self.TYPES.get(self.status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": None}}
