"""The collector: Segment's HTTP Tracking API in front of the input topics.

Unmodified Segment SDKs (analytics-python, analytics-node, analytics.js / analytics-next)
point their host at it; it authenticates the write key, applies Segment's limits and
stamps (receivedAt, messageId, batch context), validates every event with the ingest
stage's own rules, and answers 200 only once Kafka has acknowledged the records.
"""
