"""The one place a SparkSession is built."""

from __future__ import annotations

from pyspark.sql import SparkSession

from spark.settings import Profile

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Jars come from spark.jars (the project's Maven cache); never resolve at run time.
    "spark.jars.ivySettings": "",
    "spark.sql.streaming.stopGracefullyOnShutdown": "true",
}


def build_spark_session(profile: Profile, app_name: str = "reelhouse") -> SparkSession:
    """Build (or return the running) SparkSession configured by ``profile``."""
    builder = SparkSession.builder.appName(app_name).master(profile.spark_master)
    for key, value in {**_DELTA_CONF, **profile.spark_conf}.items():
        if value != "":
            builder = builder.config(key, value)
    for key, value in profile.lake.storage_conf.items():
        builder = builder.config(f"spark.hadoop.{key}", value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
