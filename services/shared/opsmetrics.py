"""Metrics every service shares beyond HTTP, declared once: Kafka consumer lag, dead letters,
dependencies and the build. Labels are low-cardinality: service, group, topic, partition,
dependency and reason codes, never ids."""

from __future__ import annotations

from importlib import metadata

from prometheus_client import Counter, Gauge

KAFKA_CONSUMER_LAG = Gauge(
    "chatpic_kafka_consumer_lag",
    "Records a consumer group has yet to handle: the partition's end offset minus the group's "
    "committed offset (from the partition's start when nothing is committed).",
    ["group", "topic", "partition"],
)
KAFKA_LAG_FAILURES = Counter(
    "chatpic_kafka_lag_check_failures_total",
    "Consumer-lag measurements that failed (broker unreachable, group or topic unreadable).",
    ["group"],
)
DEAD_LETTERS = Counter(
    "chatpic_kafka_dead_letters_total",
    "Records sent to the dead-letter topic, by the topic they came from and the reason.",
    ["source_topic", "reason"],
)
DEPENDENCY_UP = Gauge(
    "chatpic_dependency_up",
    "1 if the dependency answered this process's last check, else 0.",
    ["service", "dependency"],
)
BUILD_INFO = Gauge(
    "chatpic_build_info",
    "Always 1; the running build's version is a label.",
    ["service", "version"],
)


def build_version(configured: str = "") -> str:
    """``configured`` (CHATPIC_BUILD_VERSION) if set, else the installed package's version."""
    if configured.strip():
        return configured.strip()[:64]
    try:
        return metadata.version("chatpic")
    except metadata.PackageNotFoundError:
        return "unknown"


def announce_build(service: str, configured: str = "") -> None:
    BUILD_INFO.labels(service, build_version(configured)).set(1)
