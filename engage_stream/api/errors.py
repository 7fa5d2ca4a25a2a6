"""The API's one error type: any answer but a 200, in Segment's error shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere below a view; the view turns it into `status` and `body()`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}
