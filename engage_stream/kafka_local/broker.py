"""A real single-node Apache Kafka (KRaft, broker+controller) on loopback, without Docker.

The broker jars come from Maven Central through Maven into a cache directory (never the
repository); storage is formatted once per data directory; the broker runs as a detached
JVM whose pid is kept in the data directory so `stop`/`status` work from any process.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.16"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>engage-stream.local</groupId><artifactId>kafka-broker-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="WARN"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


def cache_dir() -> Path:
    root = os.environ.get("ENGAGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "engage-stream"
    )
    return Path(root)


@dataclass(frozen=True)
class BrokerConfig:
    port: int = 9092
    controller_port: int = 9093
    data_dir: Path = Path("var/kafka")
    heap: str = "512m"
    version: str = KAFKA_VERSION

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"


def _say(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's jars with Maven once; later calls are free."""
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    done = home / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is required to fetch the Apache Kafka broker jars")
    if shutil.which("java") is None:
        raise RuntimeError("Java 17+ is required to run the Apache Kafka broker")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(
        _POM.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION)
    )
    if libs.exists():
        shutil.rmtree(libs)
    _say(f"fetching Apache Kafka {version} broker jars from Maven Central into {libs}")
    subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
        cwd=home,
        check=True,
    )
    (home / "log4j2.xml").write_text(_LOG4J2)
    done.write_text(version)
    return libs


def _properties(cfg: BrokerConfig) -> str:
    data = cfg.data_dir.resolve()
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{cfg.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{cfg.port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data / 'logs'}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.cleaner.enable=true",
            "log.retention.hours=-1",
            "",
        ]
    )


def is_reachable(host: str = "127.0.0.1", port: int = 9092, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Children this process started, kept so `stop` can reap them: an exited child stays a
# zombie — still visible to kill(pid, 0) — until its parent waits for it.
_children: dict[int, subprocess.Popen[bytes]] = {}


def launch(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start a detached child (own session, output to `log_file`) that `alive` can reap."""
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # gone, or no /proc: kill(pid, 0) already answered
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive(pid: int) -> bool:
    """Whether `pid` still runs. Our own children are reaped here; anyone's zombie has exited."""
    if pid <= 0:
        return False  # never signal or wait for a whole process group
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) reaps it
    else:
        return reaped == 0
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return not _is_zombie(pid)


class Stopped(IntEnum):
    """How `stop` ended; falsy when there was nothing to stop."""

    NOT_RUNNING = 0
    TERMINATED = 1  # exited on SIGTERM (graceful shutdown)
    KILLED = 2  # still running after the timeout: SIGKILLed


def terminate(pid: int, timeout: float, poll_s: float = 0.05) -> Stopped:
    """SIGTERM, wait up to `timeout` for the exit, else SIGKILL; returns as soon as it exits."""
    for sig, wait_s, outcome in (
        (signal.SIGTERM, timeout, Stopped.TERMINATED),
        (signal.SIGKILL, 5.0, Stopped.KILLED),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while alive(pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        else:
            return outcome
    return Stopped.KILLED


def _pid(cfg: BrokerConfig) -> int | None:
    try:
        pid = int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def status(cfg: BrokerConfig) -> str:
    pid = _pid(cfg)
    up = is_reachable(port=cfg.port)
    if pid and up:
        return f"running (pid {pid}) on {cfg.bootstrap}"
    if up:
        return f"a broker is reachable on {cfg.bootstrap} (not started by this data dir)"
    if pid:
        return f"starting or unhealthy (pid {pid}); not accepting connections on {cfg.bootstrap}"
    return "stopped"


def new_cluster_id() -> str:
    """A random Kafka cluster id (url-safe base64 of a UUID) that StorageTool cannot take
    for an option: one in 64 starts with `-`, and `-t -4gf…` fails to parse."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def start(cfg: BrokerConfig, timeout: float = 90.0) -> None:
    """Start the broker unless one is already reachable on the port; wait until it serves."""
    if is_reachable(port=cfg.port):
        _say(f"broker already reachable on {cfg.bootstrap}")
        return
    libs = ensure_jars(cfg.version)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    props = cfg.data_dir / "server.properties"
    props.write_text(_properties(cfg))
    classpath = f"{libs}/*"
    java = [
        "java",
        f"-Xmx{cfg.heap}",
        f"-Xms{cfg.heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={libs.parent / 'log4j2.xml'}",
        "-cp",
        classpath,
    ]
    if not (cfg.data_dir / "logs" / "meta.properties").exists():
        cluster_id = new_cluster_id()
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    proc = launch([*java, "kafka.Kafka", str(props)], cfg.log_file)
    cfg.pid_file.write_text(str(proc.pid))
    _say(f"starting Apache Kafka {cfg.version} (pid {proc.pid}) on {cfg.bootstrap}")
    wait_ready(cfg, proc, timeout)


def wait_ready(cfg: BrokerConfig, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = cfg.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka broker exited with {proc.returncode}:\n{tail}")
        if is_reachable(port=cfg.port):
            try:
                admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap, request_timeout_ms=5000)
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                _say(f"broker ready on {cfg.bootstrap}")
                return
            except Exception as exc:  # broker still starting: keep polling
                last_err = exc
        time.sleep(0.3)
    raise TimeoutError(f"Kafka broker not ready on {cfg.bootstrap} after {timeout}s: {last_err}")


def stop(cfg: BrokerConfig, timeout: float = 30.0) -> Stopped:
    """Stop the broker this data directory started (from any process)."""
    pid = _pid(cfg)
    if pid is None:
        return Stopped.NOT_RUNNING
    outcome = terminate(pid, timeout)
    cfg.pid_file.unlink(missing_ok=True)
    how = (
        "stopped"
        if outcome is Stopped.TERMINATED
        else f"killed (no exit {timeout:.0f}s after SIGTERM)"
    )
    _say(f"{how} broker pid {pid}")
    return outcome
