"""Seeded bad (and valid) Segment records by category, each labelled with what must become
of it: dead-lettered with a given reason, processed, or dropped as a duplicate.

The label is the generator's own: it follows from how each record is built (a truncated
object cannot parse, a 65th level is one too many), never from asking the ingest code,
so a fuzz run that disagrees has found either a defect or a rule the label got wrong.
The same seed and base time give byte-identical records, so a failure can be replayed.

Each bad category also emits, now and then, an edge case the rules accept (exactly 300
properties, a zero-width-space id, NUL inside a property value, the deepest nesting
allowed): those are labelled processed, so accepting too little fails as surely as
accepting too much.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

PROCESSED = "processed"
DUPLICATE = "duplicate"  # dropped by the profiles stage's messageId dedup

VALID = "valid"
CATEGORIES = (
    "truncated_json",
    "wrong_types",
    "missing_ids",
    "huge_values",
    "deep_values",
    "binary",
    "nul",
    "invalid_timestamps",
    "unicode",
    "duplicate_message_ids",
)

MAX_RECORD_BYTES = 32 * 1024  # a message beyond this is oversize (reference §9)
MAX_DEPTH = 64  # objects and arrays a message may nest, itself included
PARSER_DEPTH = 1024  # orjson refuses to parse deeper
EDGE_SHARE = 0.25  # edge cases the rules accept, per bad record of a category

TYPES = ("track", "identify", "group", "page", "screen", "alias")
# Values the default identity rules block (case-insensitive): never an identifier
BLOCKED = ("null", "NULL", "anonymous", "Anonymous", "0", "000", "-1", "--", "undefined", "none")
# str.isspace() is true for each: an id made of them is no id
SPACES = (
    " ",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x85",
    "\xa0",
    "\u2003",
    "\u2028",
    "\u3000",
)
# Unicode a valid id or name may hold
ODD_TEXT = (
    "\U0001f600",  # astral plane
    "\U0001f469\u200d\U0001f4bb",  # zero-width-joiner sequence
    "e\u0301",  # combining mark (NFD)
    "\xe9",  # the same, NFC: a different id
    "\u202eevil",  # right-to-left override
    "\u200b",  # zero-width space (not whitespace to isspace)
    "\ufeff",  # BOM as a character inside a string
    "\uffff\ufffe",  # noncharacters
    "\u4e2d\u6587",
    "\u0645\u0631\u062d\u0628\u0627",
    "a/b?c#d",  # URL-unsafe
    "a%2Fb",
    "a+b c",
    "x:y:z",
    "\U0010fffd",  # the last code point allowed
)
# Byte sequences that are not UTF-8
NOT_UTF8 = (
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",
    b"\xe2\x82",  # cut multibyte
    b"\xed\xa0\x80",  # a surrogate, UTF-8 encoded
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xfe",
    b"\xff",
    b"\xf0\x9f\x98",
)


@dataclass(frozen=True, slots=True)
class Case:
    n: int  # position in the stream
    category: str
    kind: str  # how exactly it was made
    key: bytes | None
    value: bytes | None  # None: a record without a value
    expect: str  # a dead-letter reason, PROCESSED or DUPLICATE
    profile: str | None = None  # `<id_type>:<value>` of the profile it is applied to
    message_id: str | None = None  # as stored (generated ids included)
    event: str | None = None  # the event name (or type) the profile shows for it

    @property
    def bad(self) -> bool:
        return self.expect not in (PROCESSED, DUPLICATE)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


Maker = Callable[[], "Case"]


class FuzzGenerator:
    """`stream()` yields `per_category` bad records of every category and `valid` valid
    ones, interleaved at random, plus the edge cases; the second of each duplicate pair
    comes a few records after the first, under the same key (so on the same partition).

    `base_ms` is "now" for event times (valid ones within the three days before it);
    `huge_bytes` bounds the oversize records but every `cut_every`-th, the first included,
    which exceeds the dead-letter topic's value limit (1,000,000 bytes) and is cut there."""

    def __init__(
        self,
        seed: int,
        base_ms: int,
        huge_bytes: int = 120_000,
        cut_every: int = 200,
        cut_bytes: int = 1_040_000,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.base_ms = base_ms
        self.huge_bytes = huge_bytes
        self.cut_every = cut_every
        self._oversized = 0
        self.cut_bytes = cut_bytes
        self.n = 0
        self.users = [f"fz{seed}-u{k}" for k in range(400)]
        self.anons = [f"fz{seed}-a{k}" for k in range(100)]
        self.makers: dict[str, list[Maker]] = {
            "truncated_json": [self._truncated],
            "wrong_types": [
                self._wrong_type,
                self._wrong_type,
                self._not_an_object,
                self._bad_type,
                self._external_ids_not_an_array,
            ],
            "missing_ids": [self._no_ids, self._blank_ids, self._blocked_ids],
            "huge_values": [
                self._oversize,
                self._long_message_id,
                self._too_many,
                self._long_group,
            ],
            "deep_values": [self._too_deep, self._beyond_parser],
            "binary": [self._binary, self._binary_in_string, self._encoded, self._trailing],
            "nul": [self._nul_in_id, self._raw_nul],
            "invalid_timestamps": [self._bad_time_text, self._bad_time_type, self._out_of_range],
            "unicode": [self._bad_utf8, self._lone_surrogate, self._bom, self._unicode_spaces],
        }
        self.edges: dict[str, list[Maker]] = {
            "truncated_json": [self._padded],
            "wrong_types": [self._nulls_for_optional, self._odd_context],
            "missing_ids": [self._blocked_user_with_anon],
            "huge_values": [self._at_the_limits, self._big_numbers],
            "deep_values": [self._deepest_allowed],
            "binary": [self._escaped_controls],
            "nul": [self._nul_in_values],
            "invalid_timestamps": [self._odd_time_forms],
            "unicode": [self._odd_unicode],
        }
        self._pending: list[tuple[int, Case]] = []  # (due at slot, second of a pair)

    # -- the stream ----------------------------------------------------------------------

    def stream(self, per_category: int, valid: int) -> Iterator[Case]:
        slots = [c for c in CATEGORIES for _ in range(per_category)] + [VALID] * valid
        self.rng.shuffle(slots)
        for i, category in enumerate(slots):
            while self._pending and self._pending[0][0] <= i:
                yield self._renumber(self._pending.pop(0)[1])
            if category == VALID:
                yield self._valid()
            elif category == "duplicate_message_ids":
                first, second = self._duplicate_pair()
                yield first
                self._pending.append((i + self.rng.randint(1, 20), second))
                self._pending.sort(key=lambda p: p[0])
            else:
                yield self.rng.choice(self.makers[category])()
                if self.rng.random() < EDGE_SHARE:
                    yield self.rng.choice(self.edges[category])()
        for _, case in self._pending:
            yield self._renumber(case)
        self._pending = []

    def _renumber(self, case: Case) -> Case:
        self.n += 1
        return replace(case, n=self.n)

    def _case(
        self,
        category: str,
        kind: str,
        key: bytes | None,
        value: bytes | None,
        expect: str,
        body: dict[str, Any] | None = None,
    ) -> Case:
        self.n += 1
        if body is None:
            return Case(self.n, category, kind, key, value, expect)
        if expect not in (PROCESSED, DUPLICATE):
            return Case(
                self.n, category, kind, key, value, expect, message_id=body.get("messageId")
            )
        uid, aid = body.get("userId"), body.get("anonymousId")
        usable = uid if isinstance(uid, str) and uid.lower() not in _BLOCKED_LOWER else None
        profile = f"user_id:{usable}" if usable else f"anonymous_id:{aid}"
        mid = body.get("messageId") or "gen-" + hashlib.sha1(value or b"").hexdigest()
        return Case(self.n, category, kind, key, value, expect, profile, mid, _shown_as(body))

    def _mid(self) -> str:
        return f"fz{self.seed}-m{self.n + 1}-{self.rng.randrange(1 << 30):x}"

    def _time(self) -> str:
        return iso(self.base_ms - self.rng.randrange(3 * 86_400_000))

    def _body(self, kind: str | None = None, anonymous: bool = False) -> dict[str, Any]:
        """A valid message of `kind` (any type if None) for a user of the pool."""
        rng = self.rng
        kind = kind or rng.choice(TYPES)
        body: dict[str, Any] = {"type": kind, "messageId": self._mid(), "timestamp": self._time()}
        if anonymous:
            body["anonymousId"] = rng.choice(self.anons)
        else:
            uid = rng.choice(self.users)
            body["userId"] = uid
            if rng.random() < 0.3:
                body["anonymousId"] = f"{uid}-anon"  # always this user's
        if kind == "track":
            name = rng.choice(("Order Completed", "Product Viewed", "Product Added", "Signed In"))
            body["event"] = name
            body["properties"] = {
                "revenue": round(rng.uniform(0, 500), 2),
                "category": rng.choice(("shoes", "hats", "bags")),
                "product_id": f"p{rng.randrange(50)}",
            }
        elif kind == "identify":
            body["traits"] = {"plan": rng.choice(("free", "pro")), "age": rng.randrange(18, 90)}
            if "userId" in body and rng.random() < 0.5:
                body["traits"]["email"] = f"{body['userId']}@fuzz.example"
        elif kind == "group":
            body["groupId"] = f"fz{self.seed}-g{rng.randrange(20)}"
            body["traits"] = {"plan": rng.choice(("free", "pro"))}
        elif kind in ("page", "screen"):
            body["name"] = rng.choice(("Home", "Pricing", "Cart"))
            body["properties"] = {"path": "/" + rng.choice(("", "pricing", "cart"))}
        else:
            body["previousId"] = f"{body.get('userId') or body['anonymousId']}-prev"
        if rng.random() < 0.2:
            body["context"] = {"ip": "203.0.113.7", "library": {"name": "fuzz", "version": "1"}}
        return body

    def _key(self, body: dict[str, Any]) -> bytes | None:
        uid = body.get("userId") or body.get("anonymousId")
        return uid.encode() if isinstance(uid, str) else None

    def _odd_key(self) -> bytes | None:
        """A key for a record that has no user: none, binary, or long."""
        rng = self.rng
        pick = rng.random()
        if pick < 0.4:
            return None
        if pick < 0.8:
            return rng.randbytes(rng.randrange(1, 64))
        return rng.randbytes(rng.randrange(1_000, 20_000))

    def _valid(self) -> Case:
        body = self._body(anonymous=self.rng.random() < 0.15)
        return self._case(VALID, body["type"], self._key(body), dumps(body), PROCESSED, body)

    def _bad(
        self, category: str, kind: str, value: bytes | None, reason: str, key: bytes | None = None
    ) -> Case:
        return self._case(
            category, kind, key if key is not None else self._odd_key(), value, reason
        )

    def _edge(
        self, category: str, kind: str, body: dict[str, Any], value: bytes | None = None
    ) -> Case:
        value = value if value is not None else dumps(body)
        return self._case(category, kind, self._key(body), value, PROCESSED, body)

    # -- truncated JSON ------------------------------------------------------------------

    def _truncated(self) -> Case:
        whole = dumps(self._body())
        cut = self.rng.randrange(len(whole))  # never the closing brace: never an object
        return self._bad("truncated_json", "truncated", whole[:cut], "malformed_json")

    def _padded(self) -> Case:
        body = self._body()
        pad = b"".join(self.rng.choice((b" ", b"\n", b"\t", b"\r")) for _ in range(5))
        return self._edge("truncated_json", "whitespace_around", body, pad + dumps(body) + pad)

    # -- wrong types ---------------------------------------------------------------------

    WRONG: dict[str, tuple[Any, ...]] = {
        "str": (1, -7, 2.5, True, False, [], ["a"], {}, {"a": 1}),
        "dict": ("x", "", 0, 3, 1.5, True, [], [1, 2], None),
    }
    DECLARED: dict[str, tuple[tuple[str, str], ...]] = {
        "track": (("event", "str"), ("properties", "dict")),
        "identify": (("traits", "dict"),),
        "group": (("groupId", "str"), ("traits", "dict")),
        "page": (("name", "str"), ("category", "str"), ("properties", "dict")),
        "screen": (("name", "str"), ("category", "str"), ("properties", "dict")),
        "alias": (("previousId", "str"),),
    }
    COMMON = (
        ("userId", "str"),
        ("anonymousId", "str"),
        ("messageId", "str"),
        ("context", "dict"),
        ("integrations", "dict"),
    )

    def _wrong_type(self) -> Case:
        rng = self.rng
        body = self._body()
        kind = body["type"]
        fields = self.COMMON + self.DECLARED[kind]
        if kind in ("track", "identify", "page", "screen"):
            fields += (("groupId", "str!"), ("previousId", "str!"))  # undeclared, still read
        name, want = rng.choice(fields)
        if want == "str!":  # read as an optional string: only a truthy non-string fails
            value = rng.choice((1, 2.5, True, ["a"], {"a": 1}))
        else:
            value = rng.choice(self.WRONG[want])
        body[name] = value
        return self._bad(
            "wrong_types", f"{kind}.{name}", dumps(body), "invalid_field", self._key(body)
        )

    def _not_an_object(self) -> Case:
        value = self.rng.choice(([self._body()], "track", 42, 1.5, True, None, [], [1, "a"]))
        return self._bad("wrong_types", "not_an_object", dumps(value), "not_an_object")

    def _bad_type(self) -> Case:
        body = self._body()
        choice = self.rng.choice(
            (None, 1, ["track"], {"t": 1}, "Track", "TRACK", "", "warp", "x" * 40)
        )
        if choice is None and self.rng.random() < 0.5:
            del body["type"]
        else:
            body["type"] = choice
        return self._bad("wrong_types", "type", dumps(body), "unknown_type", self._key(body))

    def _nulls_for_optional(self) -> Case:
        """null where the spec allows the field to be absent."""
        body = self._body(self.rng.choice(("track", "identify", "page", "screen")))
        for name in ("messageId", "timestamp", "sentAt", "originalTimestamp", "receivedAt"):
            if self.rng.random() < 0.5:
                body[name] = None
        if body["type"] in ("page", "screen"):
            body["name"] = None
        body.setdefault("anonymousId", None)
        return self._edge("wrong_types", "optional_null", body)

    def _external_ids_not_an_array(self) -> Case:
        """`context.externalIds` is an array of objects (reference §6); anything else is
        a wrong type — a number or boolean once stopped ingest with a TypeError."""
        body = self._body()
        body["context"] = {
            "externalIds": self.rng.choice((5, 0.5, True, False, "email", {"id": "x"}))
        }
        return self._bad(
            "wrong_types", "context.externalIds", dumps(body), "invalid_field", self._key(body)
        )

    def _odd_context(self) -> Case:
        """Context fields of the wrong shape that are read only when well-formed."""
        body = self._body("track")
        body["context"] = self.rng.choice(
            (
                {"externalIds": [5, "x", None, {"id": 5, "type": "email"}, {"type": "email"}]},
                {"externalIds": None},
                {"traits": 5},
                {"traits": {"email": ["a@b.c"]}},
                {"device": 5},
                {"device": {"type": ["ios"], "id": 5, "advertisingId": {}}},
                {"groupId": None},
                {"messaging_subscriptions": [5, {"key": 5, "type": None, "status": []}]},
            )
        )
        return self._edge("wrong_types", "odd_context", body)

    # -- missing ids ---------------------------------------------------------------------

    def _no_ids(self) -> Case:
        body = self._body()
        body.pop("userId", None)
        body.pop("anonymousId", None)
        if self.rng.random() < 0.5:
            body["userId"] = None
        if self.rng.random() < 0.5:
            body["anonymousId"] = None
        return self._bad("missing_ids", "absent", dumps(body), "missing_id")

    def _blank_ids(self) -> Case:
        rng = self.rng
        body = self._body()
        for name in ("userId", "anonymousId"):
            if rng.random() < 0.8:
                body[name] = "".join(rng.choice(SPACES) for _ in range(rng.randrange(0, 6)))
            else:
                body.pop(name, None)
        return self._bad("missing_ids", "blank", dumps(body), "missing_id")

    def _blocked_ids(self) -> Case:
        body = self._body()
        body["userId"] = self.rng.choice(BLOCKED)
        if self.rng.random() < 0.5:
            body["anonymousId"] = self.rng.choice(BLOCKED)
        else:
            body.pop("anonymousId", None)
        if body["type"] == "identify":
            body["traits"].pop("email", None)  # an email would be a usable identifier
        return self._case(
            "missing_ids", "blocked", self._key(body), dumps(body), "blocked_identifier", body
        )

    def _blocked_user_with_anon(self) -> Case:
        body = self._body("track")
        body["userId"] = self.rng.choice(BLOCKED)
        body["anonymousId"] = self.rng.choice(self.anons)
        return self._edge("missing_ids", "blocked_user_usable_anon", body)

    # -- huge values ---------------------------------------------------------------------

    def _oversize(self) -> Case:
        rng = self.rng
        body = self._body("track")
        cut = self._oversized % self.cut_every == 0
        self._oversized += 1
        if cut:
            size = self.cut_bytes + rng.randrange(8_000)
        else:
            size = rng.randrange(MAX_RECORD_BYTES + 1, max(MAX_RECORD_BYTES + 2, self.huge_bytes))
        fill = size - len(dumps({**body, "properties": {"blob": ""}}))
        if cut or rng.random() < 0.5:
            body["properties"] = {"blob": "x" * fill}
        else:  # many small values, topped up to the size
            body["properties"] = {f"k{i}": i for i in range(fill // 14)}
            body["properties"]["blob"] = ""
            body["properties"]["blob"] = "x" * max(0, size - len(dumps(body)))
        raw = dumps(body)
        kind = "cut_to_size" if len(raw) > 1_000_000 else "oversize"
        return self._bad("huge_values", kind, raw, "oversize", self._key(body))

    def _long_message_id(self) -> Case:
        body = self._body()
        ch = self.rng.choice(("m", "\xe9", "\U0001f600"))
        body["messageId"] = ch * self.rng.randrange(101, 5_000)
        return self._bad(
            "huge_values",
            "message_id_too_long",
            dumps(body),
            "message_id_too_long",
            self._key(body),
        )

    def _too_many(self) -> Case:
        kind = self.rng.choice(("track", "page", "identify", "group"))
        body = self._body(kind)
        field = "traits" if kind in ("identify", "group") else "properties"
        most = 299 if kind == "identify" else 300
        body[field] = {f"f{i}": i for i in range(most + 1 + self.rng.randrange(200))}
        return self._bad(
            "huge_values", f"too_many_{field}", dumps(body), "invalid_field", self._key(body)
        )

    def _long_group(self) -> Case:
        body = self._body("group")
        body["groupId"] = "g" * self.rng.randrange(501, 20_000)
        return self._bad(
            "huge_values", "group_id_too_long", dumps(body), "invalid_field", self._key(body)
        )

    def _at_the_limits(self) -> Case:
        rng = self.rng
        pick = rng.randrange(4)
        if pick == 0:  # exactly 32 KB
            body = self._body("track")
            body["properties"] = {"blob": ""}
            body["properties"]["blob"] = "y" * (MAX_RECORD_BYTES - len(dumps(body)))
            return self._edge("huge_values", "exactly_32kb", body)
        if pick == 1:
            kind = rng.choice(("track", "identify"))
            body = self._body(kind)
            field, most = ("traits", 299) if kind == "identify" else ("properties", 300)
            body[field] = {f"f{i}": i for i in range(most)}
            return self._edge("huge_values", f"most_{field}", body)
        if pick == 2:
            body = self._body()
            body["messageId"] = (body["messageId"] + "-" + "m" * 100)[:100]
            return self._edge("huge_values", "message_id_100", body)
        body = self._body("group")
        body["groupId"] = (f"fz{self.seed}-{self.n}-G" + "g" * 500)[:500]
        return self._edge("huge_values", "group_id_500", body)

    BIG_NUMBERS = (
        b"1e308",
        b"-1.7976931348623157e308",
        b"18446744073709551615",
        b"-9223372036854775808",
        b"100000000000000000000000000000",  # beyond 64 bits: read as a float
        b"5e-324",
        b"-0.0",
    )

    def _big_numbers(self) -> Case:
        body = self._body("track")
        body["event"] = "Order Completed"
        body["properties"] = {"revenue": "@@", "qty": "@@"}
        raw = dumps(body).replace(b'"@@"', self.rng.choice(self.BIG_NUMBERS))
        return self._edge("huge_values", "big_numbers", body, raw)

    # -- deep values ---------------------------------------------------------------------

    def _nested(self, levels: int) -> bytes:
        """`levels` nested containers (arrays and objects mixed) around 1."""
        opens, closes = [], []
        for _ in range(levels):
            if self.rng.random() < 0.5:
                opens.append(b"[")
                closes.append(b"]")
            else:
                opens.append(b'{"a":')
                closes.append(b"}")
        return b"".join(opens) + b"1" + b"".join(reversed(closes))

    def _deep_message(self, levels: int) -> tuple[dict[str, Any], bytes]:
        """A valid message whose first property holds `levels` nested containers: the
        message nests `levels + 2` deep (itself and its properties)."""
        body = self._body("track")
        head = dumps({**body, "properties": {"deep": 0}})
        marker = b'"deep":0'
        return body, head.replace(marker, b'"deep":' + self._nested(levels), 1)

    def _too_deep(self) -> Case:
        levels = self.rng.randrange(MAX_DEPTH - 1, PARSER_DEPTH - 1)  # 65 .. 1024 in all
        body, raw = self._deep_message(levels)
        return self._bad("deep_values", "too_deep", raw, "too_deep", self._key(body))

    def _beyond_parser(self) -> Case:
        levels = self.rng.randrange(PARSER_DEPTH - 1, 4_000)  # 1025 .. in all
        body, raw = self._deep_message(levels)
        return self._bad("deep_values", "beyond_the_parser", raw, "malformed_json", self._key(body))

    def _deepest_allowed(self) -> Case:
        body, raw = self._deep_message(MAX_DEPTH - 2)
        return self._edge("deep_values", "depth_64", body, raw)

    # -- binary --------------------------------------------------------------------------

    def _binary(self) -> Case:
        rng = self.rng
        if rng.random() < 0.05:
            key = self.rng.randbytes(8)  # a record needs a key or a value
            return self._bad("binary", "no_value", None, "malformed_json", key)
        if rng.random() < 0.05:
            return self._bad("binary", "empty", rng.choice((b"", b" ", b"\n\t ")), "malformed_json")
        first = bytes([rng.choice([*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x80, 0x100)])])
        return self._bad(
            "binary", "random", first + rng.randbytes(rng.randrange(0, 2_000)), "malformed_json"
        )

    def _binary_in_string(self) -> Case:
        body = self._body("track")
        raw = dumps({**body, "event": "@@"}).replace(b"@@", self.rng.randbytes(16) + b"\xff", 1)
        return self._bad("binary", "bytes_in_string", raw, "malformed_json", self._key(body))

    def _encoded(self) -> Case:
        """A valid message in an encoding other than UTF-8 JSON."""
        raw = dumps(self._body())
        pick = self.rng.randrange(3)
        if pick == 0:
            return self._bad("binary", "gzip", gzip.compress(raw, mtime=0), "malformed_json")
        codec = ("utf-16", "utf-32")[pick - 1]
        return self._bad("binary", codec, raw.decode().encode(codec), "malformed_json")

    def _trailing(self) -> Case:
        body = self._body()
        raw = dumps(body) + self.rng.choice((b"\x00", b"\xff", b"x", b"}", b"{}", b"\x1f\x8b"))
        return self._bad("binary", "trailing_bytes", raw, "malformed_json", self._key(body))

    def _escaped_controls(self) -> Case:
        body = self._body("track")
        body["properties"]["notes"] = "".join(chr(c) for c in range(0, 32)) + "\x7f"
        return self._edge("binary", "escaped_control_chars", body)

    # -- NUL -----------------------------------------------------------------------------

    def _nul_in_id(self) -> Case:
        rng = self.rng
        kind = rng.choice(("track", "group", "alias", "identify"))
        body = self._body(kind)
        names = ["userId", "messageId"]
        if kind == "group":
            names.append("groupId")
        elif kind == "alias":
            names.append("previousId")
        elif kind == "track":
            names.append("groupId")  # undeclared on a track, still an id
        name = rng.choice(names)
        if name == "userId" and "anonymousId" in body and rng.random() < 0.5:
            name = "anonymousId"
        base = body.get(name) or "g"
        at = rng.randrange(len(base) + 1)
        body[name] = base[:at] + "\x00" + base[at:]
        return self._bad("nul", f"in_{name}", dumps(body), "invalid_field", self._key(body))

    def _raw_nul(self) -> Case:
        raw = dumps(self._body())
        at = self.rng.randrange(len(raw) + 1)
        return self._bad("nul", "raw_nul_byte", raw[:at] + b"\x00" + raw[at:], "malformed_json")

    def _nul_in_values(self) -> Case:
        kind = self.rng.choice(("track", "identify", "page"))
        body = self._body(kind)
        if kind == "identify":
            body["traits"]["nul\x00key"] = "nul\x00value"
        else:
            body["properties"]["nul\x00key"] = "a\x00b"
            if kind == "track":
                body["event"] = body["event"] + "\x00"
        body["context"] = {"page": {"title": "\x00"}, "traits": {"x\x00": 1}}
        return self._edge("nul", "nul_in_values", body)

    # -- invalid timestamps --------------------------------------------------------------

    TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
    BAD_TIME_TEXT = (
        "",
        "yesterday",
        "now",
        "2026-01-01",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00",
        "2026/01/01 00:00:00Z",
        "01/02/2026 10:00:00 +0000",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T23:59:60Z",
        "2026-01-01T00:00:00+25:00",
        " 2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00ZZ",
        "2026-01-01T00:00:00.1234567890Z",
        "+12026-01-01T00:00:00Z",
        "2026-W01-1T00:00:00Z",
        "T00:00:00Z",
        "1700000000",
        "1700000000000",
        "Thu, 01 Jan 2026 00:00:00 GMT",
        "2026-01-01T00:00:00\u00a0Z",
        "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",  # other scripts' digits
    )

    def _bad_time_text(self) -> Case:
        body = self._body()
        body[self.rng.choice(self.TIME_FIELDS)] = self.rng.choice(self.BAD_TIME_TEXT)
        return self._bad(
            "invalid_timestamps", "text", dumps(body), "invalid_field", self._key(body)
        )

    def _bad_time_type(self) -> Case:
        body = self._body()
        value = self.rng.choice((0, 1700000000, 1700000000000, -1, 1.5, True, False, [], {}, ["x"]))
        body[self.rng.choice(self.TIME_FIELDS)] = value
        return self._bad(
            "invalid_timestamps", "type", dumps(body), "invalid_field", self._key(body)
        )

    def _out_of_range(self) -> Case:
        rng = self.rng
        body = self._body()
        pick = rng.randrange(3)
        if pick == 0:  # before 1970, in any field
            body[rng.choice(self.TIME_FIELDS)] = rng.choice(
                ("1969-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z", "1900-06-01T12:00:00+02:00")
            )
            kind = "before_1970"
        elif pick == 1:  # after 2286 where it becomes the event time or receive time
            later = rng.choice(
                ("2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2286-11-21T00:00:00Z")
            )
            body.pop("timestamp", None)
            body[rng.choice(("timestamp", "originalTimestamp", "receivedAt"))] = later
            kind = "after_2286"
        else:  # the skew correction lands outside 1970 .. 2286
            body.pop("timestamp", None)
            if rng.random() < 0.5:
                body["originalTimestamp"], body["sentAt"] = (
                    "1970-01-02T00:00:00Z",
                    "2250-01-01T00:00:00Z",
                )
            else:
                body["originalTimestamp"], body["sentAt"] = (
                    "2286-01-01T00:00:00Z",
                    "1970-01-02T00:00:00Z",
                )
            kind = "skew_out_of_range"
        return self._bad("invalid_timestamps", kind, dumps(body), "invalid_field", self._key(body))

    def _odd_time_forms(self) -> Case:
        """The same recent instant written in other forms ISO-8601 allows."""
        body = self._body()
        when = datetime.fromtimestamp((self.base_ms - self.rng.randrange(86_400_000)) / 1000, UTC)
        forms = (
            when.strftime("%Y-%m-%d %H:%M:%SZ"),
            when.strftime("%Y-%m-%dt%H:%M:%Sz"),
            when.strftime("%Y-%m-%dT%H:%MZ"),
            when.strftime("%Y-%m-%dT%H:%M:%S,%fZ"),
            when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",  # nanoseconds
            when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            when.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        body["timestamp"] = self.rng.choice(forms)
        return self._edge("invalid_timestamps", "other_iso_forms", body)

    # -- unicode -------------------------------------------------------------------------

    def _bad_utf8(self) -> Case:
        body = self._body("track")
        field = self.rng.choice(("event", "userId", "messageId"))
        raw = dumps({**body, field: "@@"}).replace(b"@@", b"ok" + self.rng.choice(NOT_UTF8), 1)
        return self._bad("unicode", "not_utf8", raw, "malformed_json", self._key(body))

    def _lone_surrogate(self) -> Case:
        body = self._body("track")
        field = self.rng.choice(("event", "userId", "messageId"))
        lone = self.rng.choice(
            (b"\\ud800", b"\\udbff", b"\\udc00", b"\\udfff", b"\\ud83dx", b"\\ude00\\ud83d")
        )
        raw = dumps({**body, field: "@@"}).replace(b"@@", lone, 1)
        return self._bad("unicode", "lone_surrogate", raw, "malformed_json", self._key(body))

    def _bom(self) -> Case:
        body = self._body()
        return self._bad(
            "unicode", "bom", b"\xef\xbb\xbf" + dumps(body), "malformed_json", self._key(body)
        )

    def _unicode_spaces(self) -> Case:
        body = self._body("track")
        body["userId"] = "".join(
            self.rng.choice(SPACES[7:]) for _ in range(self.rng.randrange(1, 5))
        )
        body.pop("anonymousId", None)
        return self._bad(
            "unicode", "unicode_whitespace_id", dumps(body), "missing_id", self._key(body)
        )

    def _odd_unicode(self) -> Case:
        rng = self.rng
        body = self._body(rng.choice(("track", "identify")))
        odd = rng.choice(ODD_TEXT)
        body["userId"] = (
            f"fz{self.seed}-{self.n + 1}-{odd}" if rng.random() < 0.7 else odd + str(self.n + 1)
        )
        body.pop("anonymousId", None)
        if body["type"] == "track":
            body["event"] = f"Viewed {odd}"
            body["properties"] = {odd: odd, "escaped": "\U0001f600"}
        else:
            body["traits"] = {odd: odd, f"plan{odd}": "pro"}
        body["messageId"] = self._mid() + odd
        if len(body["messageId"]) > 100:
            body["messageId"] = body["messageId"][:100]
        return self._edge("unicode", "odd_unicode", body)

    # -- duplicate messageIds --------------------------------------------------------------

    def _duplicate_pair(self) -> tuple[Case, Case]:
        rng = self.rng
        first = self._body(rng.choice(("track", "page", "screen")))
        first.pop("anonymousId", None)
        second = dict(first)
        second["timestamp"] = self._time()
        change = rng.randrange(3)
        if change == 0 and first["type"] == "track":
            second["event"] = "Something Else"
            second["properties"] = {"other": True}
        elif change == 1:
            second = {
                "type": "identify",
                "userId": first["userId"],
                "messageId": first["messageId"],
                "timestamp": second["timestamp"],
                "traits": {"second_body": True},
            }
        else:
            second["properties"] = {"second_body": rng.randrange(1000)}
            second["context"] = {"ip": "198.51.100.1"}
        a = self._case(
            "duplicate_message_ids", "first", self._key(first), dumps(first), PROCESSED, first
        )
        raw = dumps(second)
        b = Case(
            0,
            "duplicate_message_ids",
            "second_body",
            self._key(second),
            raw,
            DUPLICATE,
            a.profile,
            a.message_id,
            a.event,
        )
        return a, b


_BLOCKED_LOWER = {b.lower() for b in BLOCKED}


def _shown_as(body: dict[str, Any]) -> str:
    """The event name the Profile API shows for a valid message (its type if none)."""
    kind = body["type"]
    if kind == "track":
        return str(body["event"])
    if kind == "page":
        return "Page Viewed"
    if kind == "screen":
        return "Screen Viewed"
    return str(kind)
