"""External ids an event carries, promoted the way Segment does by default (reference §6)."""

from __future__ import annotations

from typing import Any

from engage_stream.events import ProfileEvent


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def extract_external_ids(event: ProfileEvent) -> list[tuple[str, str, str]]:
    """(type, id, collection) triples; types lowercase as the Profile API expects."""
    out: list[tuple[str, str, str]] = []
    if event.user_id:
        out.append(("user_id", event.user_id, "users"))
    if event.anonymous_id:
        out.append(("anonymous_id", event.anonymous_id, "users"))
    ctx = event.context
    ctx_traits = ctx.get("traits") if isinstance(ctx.get("traits"), dict) else {}
    email = _str(event.traits.get("email")) if event.type == "identify" else None
    email = email or _str(ctx_traits.get("email"))
    if email:
        out.append(("email", email, "users"))
    if event.group_id:
        out.append(("group_id", event.group_id, "accounts"))
    device = ctx.get("device") if isinstance(ctx.get("device"), dict) else {}
    platform = str(device.get("type") or "").lower()
    if platform in ("ios", "android"):
        if _str(device.get("id")):
            out.append((f"{platform}.id", device["id"], "users"))
        if device.get("adTrackingEnabled") is True and _str(device.get("advertisingId")):
            out.append((f"{platform}.idfa", device["advertisingId"], "users"))
        if _str(device.get("token")):
            out.append((f"{platform}.push_token", device["token"], "users"))
    for ext in ctx.get("externalIds") or []:
        if isinstance(ext, dict) and _str(ext.get("id")) and _str(ext.get("type")):
            out.append((ext["type"].lower(), ext["id"], str(ext.get("collection") or "users")))
    return out
