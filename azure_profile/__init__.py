"""The azure profile: Event Hubs Kafka endpoint, ADLS Gen2, Key Vault."""
