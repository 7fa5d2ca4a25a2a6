"""Outputs: engine changes as Segment Identify/Track payloads per destination plus the
all-changes record (`records`), and audience CSV export (`csv_export`)."""

from engage_stream.outputs.csv_export import export_audience_csv
from engage_stream.outputs.records import OutputRecord, build_records

__all__ = ["OutputRecord", "build_records", "export_audience_csv"]
