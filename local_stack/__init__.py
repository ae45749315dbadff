"""The local stack: Apache Kafka (KRaft) and Azurite as native processes, and the local profile."""
