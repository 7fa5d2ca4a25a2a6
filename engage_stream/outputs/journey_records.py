"""Journey outputs → the records to produce (the journey machine's outputs are plain data).

- every output → `engage.journeys`, keyed by profile id: the journey log (entered, each
  step entered and left with its branch, sends, skipped messages, completed / exited) in
  the machine's own shape (`orjson.dumps` of the output dataclass: `JourneyOutput.to_dict()`);
- a destination send → each of its destinations' output topic (`engage.out.<name>`), the
  Segment calls the machine built, with `integrations` naming that destination and the
  space in `context.personas`, as audience outputs are (`outputs.records`);
- a message request → `engage.messages`, keyed by profile id, for a messaging connector:
  a `messaging.requests.MessageSendRequest` with `source: journey` (and the journey,
  version, step and instance). A connector sends each idempotency key at most once: a
  replay or a recovered batch repeats the same key.

Every record carries its messageId in the `engage.message_id` header.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from engage_stream.config import Settings
from engage_stream.journeys.machine import DestinationSend, JourneyOutput, MessageRequest
from engage_stream.messaging.requests import MessageSendRequest
from engage_stream.outputs.builder import MESSAGE_ID_HEADER
from engage_stream.records import OutgoingRecord
from engage_stream.timestamps import iso_ms


def journey_records(outputs: Iterable[JourneyOutput], settings: Settings) -> list[OutgoingRecord]:
    topics = settings.topics
    space = settings.space_id
    out: list[OutgoingRecord] = []
    for o in outputs:
        key = o.profile_id.encode()
        header = [(MESSAGE_ID_HEADER, o.message_id.encode())]
        out.append(OutgoingRecord(topics.journeys, key, orjson.dumps(o), header))
        if isinstance(o, DestinationSend):
            for dest in o.destinations:
                for call in o.calls:
                    personas = {
                        **call["context"]["personas"],
                        "namespace": space,
                        "space_id": space,
                    }
                    value = {
                        **call,
                        "context": {**call["context"], "personas": personas},
                        "integrations": {"All": False, dest: True},
                    }
                    mid = [(MESSAGE_ID_HEADER, str(call["messageId"]).encode())]
                    out.append(OutgoingRecord(topics.output(dest), key, orjson.dumps(value), mid))
        elif isinstance(o, MessageRequest):
            request = MessageSendRequest(
                message_id=o.message_id,
                idempotency_key=o.idempotency_key,
                source="journey",
                channel=o.channel,  # type: ignore[arg-type]
                template=o.template,
                recipient=o.recipient,
                group=o.group,
                variables=o.variables,
                profile_id=o.profile_id,
                at=o.at,
                at_iso=iso_ms(o.at),
                space_id=space,
                journey=o.journey,
                version=o.version,
                step=o.step,
                instance_id=o.instance_id,
            )
            out.append(OutgoingRecord(topics.messages, key, request.to_value(), header))
    return out
