"""docker-compose.kafka.yml describes the same broker as `engage-stream kafka start`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engage_stream.kafka_local.broker import BrokerConfig, _properties

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.kafka.yml"
# Where a container necessarily differs from a loopback process.
PER_HOST = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
}


def _service() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]


def _env_name(prop: str) -> str:
    """The apache/kafka image's mapping: `KAFKA_` + upper case, dots as underscores."""
    return "KAFKA_" + prop.upper().replace(".", "_")


def test_compose_sets_what_the_local_broker_sets(tmp_path: Path) -> None:
    env = {k: str(v) for k, v in _service()["environment"].items()}
    props = dict(
        line.split("=", 1)
        for line in _properties(BrokerConfig(data_dir=tmp_path)).splitlines()
        if line
    )
    for prop, value in props.items():
        if prop not in PER_HOST:
            assert env.get(_env_name(prop)) == value, prop
    # A static quorum: the image formats storage without --standalone.
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert env["CLUSTER_ID"], "own cluster id, not the image's fixed default"


def test_the_log_dir_is_the_mounted_volume() -> None:
    service = _service()
    mounts = {v.split(":", 1)[1] for v in service["volumes"]}
    assert service["environment"]["KAFKA_LOG_DIRS"] in mounts


def test_clients_on_the_host_reach_the_advertised_listener() -> None:
    service = _service()
    advertised = service["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == "PLAINTEXT://127.0.0.1:9092"
    assert "127.0.0.1:9092:9092" in service["ports"]
