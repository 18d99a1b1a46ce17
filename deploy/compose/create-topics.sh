#!/bin/sh
# Create ChatPic's Kafka topics if they are missing (idempotent: safe on every start).
# Runs in the apache/kafka image. Environment:
#   CHATPIC_KAFKA_BOOTSTRAP  broker address (the services' own setting)
#   CHATPIC_TOPIC_PREFIX     prefix of every topic name (the services' own setting)
#   TOPICS                   space-separated names from services/shared/events.py TOPICS
#   PARTITIONS               partitions per topic: the most scanner replicas that can work at once
#   REPLICATION_FACTOR       1 on a single broker; 3 on a real cluster
#   KAFKA_TOPICS_BIN         kafka-topics.sh (default: the apache/kafka image's)
set -eu

: "${CHATPIC_KAFKA_BOOTSTRAP:?}" "${TOPICS:?}" "${PARTITIONS:?}" "${REPLICATION_FACTOR:?}"
prefix="${CHATPIC_TOPIC_PREFIX-chatpic.}"
kafka_topics="${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}"

for topic in $TOPICS; do
    "$kafka_topics" --bootstrap-server "$CHATPIC_KAFKA_BOOTSTRAP" --create --if-not-exists \
        --topic "${prefix}${topic}" --partitions "$PARTITIONS" \
        --replication-factor "$REPLICATION_FACTOR"
done

# Show what exists (a topic made earlier with fewer partitions is not changed here; grow it with
# kafka-topics.sh --alter --partitions N).
"$kafka_topics" --bootstrap-server "$CHATPIC_KAFKA_BOOTSTRAP" --describe --topic "${prefix}.*"
echo "ChatPic topics are in place."
