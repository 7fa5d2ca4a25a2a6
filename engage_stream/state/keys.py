"""Every key of a partition database, in one place.

One RocksDB database holds one partition of the profile-events topic. Its keys, by prefix:

| prefix | key | value | written by |
|---|---|---|---|
| `p:` | `p:<profile>` | bookkeeping header + `ProfileRecord` JSON | `profiles.store` |
| `h:` | `h:<profile>\\0<event ms, 13 digits>\\0<messageId>` | the event (history) | `profiles.store` |
| `t:` | `t:<due ms, 13 digits>\\0<profile>` | empty (the wake-up index) | `profiles.store` |
| `d:` | `d:<profile>\\0<messageId>` | arrival ms (dedup window, busy profiles) | `profiles.store` |
| `s:` | `s:<audience>` | member count in this partition | `profiles.sizes` |
| `r:` | `r:<merged-away profile>` | the profile it was merged into (events are forwarded) | `profiles.stage` |
| `j:` | `j:<journey>\\0<count name>` | journey counts in this partition | `journeys.counts` |
| `b:` | `b:<broadcast>` | this partition's progress of the broadcast's send | `broadcasts.sending` |
| `q:` | `q:<broadcast>\\0<n, 9 digits>` | a queued send request (the snapshot, not sent yet) | `broadcasts.sending` |
| `e:` | `e:<definitions fingerprint>` | the definition versions it stands for | `profiles.store` |
| `c:` | `c:clock`, `c:sweep` | partition clock; backfill epoch and cursor | `state.transaction` |
| `\\0meta:` | changelog offset, source offset, format | recovery bookkeeping | `state.partition_store` |

The identity stage's database (one, for the single resolution partition):

| prefix | key | value | written by |
|---|---|---|---|
| `x:` | `x:<id type>\\0<value>` | canonical profile id | `identity.graph` |
| `g:` | `g:<profile>` | its identifiers, merge count, creation time | `identity.graph` |
| `m:` | `m:<merged-away profile>` | the profile it was merged into | `identity.graph` |

Every key except `\\0meta:` is mirrored on the changelog topic; the meta keys describe the
database itself and are written only in the same `WriteBatch` as the data they describe.
"""

from __future__ import annotations

PROFILE = b"p:"
HISTORY = b"h:"
WAKEUP = b"t:"
SEEN = b"d:"
SIZE = b"s:"
REDIRECT = b"r:"
JOURNEY_COUNT = b"j:"
BROADCAST = b"b:"
BROADCAST_QUEUE = b"q:"
EPOCH = b"e:"
CLOCK = b"c:clock"
SWEEP = b"c:sweep"

ID_VALUE = b"x:"
ID_PROFILE = b"g:"
ID_MERGED = b"m:"

SEP = b"\x00"
END = b"\xff"  # above every byte a key continues with: `prefix + END` bounds a prefix scan

META_PREFIX = b"\x00meta:"
META_CHANGELOG = META_PREFIX + b"changelog_offset"
META_SOURCE = META_PREFIX + b"source_offset"
META_FORMAT = META_PREFIX + b"format"

# The layout above. A database stamped with another number (or none, but holding data) is
# refused rather than misread: rebuild it from the changelog.
FORMAT_VERSION = 1


def ts13(ms: int) -> bytes:
    """Milliseconds as 13 digits, so byte order is time order (1970..2286)."""
    return b"%013d" % max(0, ms)
