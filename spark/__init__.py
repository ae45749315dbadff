"""Spark Structured Streaming + Delta: the same code for every profile."""
