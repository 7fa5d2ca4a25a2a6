"""The original bytes of an event a stage after ingest dead-letters.

The identity and profiles stages consume internal records — the event as ingest validated
it — so their dead letters would carry that copy, not what the sender sent. Ingest stamps
every internal record with its input record's coordinates (`records.ORIGIN_HEADER`), and
`DeadLetter.of` names them; here, before the checkpoint produces such a dead letter, the
original is read back from the input topic and becomes its value, so an operator can fix
and re-produce exactly what was sent (issue #16.5). Dead letters past ingest are rare (no
known input reaches them), so one short-lived consumer per batch that has any is cheap.

If the original cannot be read (gone with the input topic's retention, the broker slow),
the dead letter keeps the validated copy and says so with `engage.dlq.value:
validated_event` — the batch is never failed or delayed long for it.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from engage_stream import metrics
from engage_stream.ingest.dead_letter import HEADER_PREFIX, DeadLetter
from engage_stream.records import OutgoingRecord

log = logging.getLogger(__name__)

VALUE_HEADER = HEADER_PREFIX + "value"


class Originals:
    def __init__(self, bootstrap: str, dead_letter_topic: str, timeout_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.dead_letter_topic = dead_letter_topic
        self.timeout_s = timeout_s

    async def restore(self, outputs: list[OutgoingRecord]) -> None:
        """Give each of `outputs`' dead letters of an internal record its original bytes."""
        wanted = [
            (i, dl)
            for i, r in enumerate(outputs)
            if r.topic == self.dead_letter_topic
            and r.headers
            and (dl := DeadLetter.from_headers(r.headers)).stage_record is not None
        ]
        if not wanted:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        try:
            await asyncio.wait_for(consumer.start(), self.timeout_s)
            for i, dl in wanted:
                value = await self._read(consumer, dl)
                rec = outputs[i]
                if value is None:
                    metrics.labelled(metrics.dlq_originals, "missing").inc()
                    rec.headers = [*(rec.headers or []), (VALUE_HEADER, b"validated_event")]
                    continue
                metrics.labelled(metrics.dlq_originals, "restored").inc()
                fresh = dl.model_copy(update={"original_bytes": None, "original_sha256": None})
                kept = [h for h in rec.headers or [] if not h[0].startswith(HEADER_PREFIX)]
                outputs[i] = fresh.record(rec.topic, rec.key, value, kept)
        except Exception as exc:  # the broker, not the data: keep the copies, go on
            log.warning("dead letters keep their validated copies: %r", exc)
            for i, _ in wanted:
                rec = outputs[i]
                if not any(k == VALUE_HEADER for k, _ in rec.headers or []):
                    rec.headers = [*(rec.headers or []), (VALUE_HEADER, b"validated_event")]
        finally:
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer, dl: DeadLetter) -> bytes | None:
        tp = TopicPartition(dl.topic, dl.partition)
        consumer.assign([tp])
        consumer.seek(tp, dl.offset)
        try:
            msg = await asyncio.wait_for(consumer.getone(tp), self.timeout_s)
        except TimeoutError:
            return None
        if msg.offset != dl.offset or msg.value is None:
            return None  # compacted or deleted: the offset is gone
        return msg.value  # cut to the dead-letter topic's size by DeadLetter.record
