"""The API's one error type: any answer but a 200, in Segment's error shape."""

from __future__ import annotations

from typing import Any

RETRY_AFTER_S = 2  # how long a client waits before retrying a 503 (a rebalance takes seconds)


class ApiError(Exception):
    """Raised anywhere below a view; the view turns it into `status`, `headers` and `body()`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    @classmethod
    def unavailable(cls, message: str, retry_after_s: int = RETRY_AFTER_S) -> ApiError:
        """A 503 the client should retry: `Retry-After` says when (Segment's SDKs and most
        HTTP clients honour it)."""
        return cls(503, "service_unavailable", message, {"Retry-After": str(retry_after_s)})
