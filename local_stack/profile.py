"""The ``local`` profile provider, registered under the ``reelhouse.profiles`` entry point."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from local_stack import class_archive
from local_stack.jvm import spark_jars
from local_stack.settings import EMULATOR_KEY, PACKAGE_DIR, load_stack_settings
from spark.settings import SettingsError

PROFILE_FILE = PACKAGE_DIR / "profile.toml"


class LocalProfileProvider:
    """Reads ``profile.toml`` and fills in the stack's endpoints and the cached jars."""

    def raw_profile(self) -> Mapping[str, Any]:
        stack = load_stack_settings()
        values = {
            "kafka_bootstrap": stack.kafka.bootstrap_servers,
            "state_dir": stack.state_dir.as_posix(),
            "blob_endpoint": stack.azurite.blob_endpoint,
            "blob_host_port": f"{stack.azurite.host}:{stack.azurite.blob_port}",
            "account": stack.azurite.account,
            "lake_container": stack.azurite.lake_container,
            # The emulator's published development key: valid only against Azurite.
            "emulator_key": EMULATOR_KEY,
        }
        try:
            with PROFILE_FILE.open("rb") as handle:
                raw = _fill(tomllib.load(handle), values)
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"cannot read the local profile {PROFILE_FILE}: {error}") from None
        spark = raw.get("spark")
        if not isinstance(spark, dict):  # spark.settings names the missing or wrong section
            return raw
        conf = spark.get("conf", {})
        if not isinstance(conf, dict):
            raise SettingsError(
                f"{PROFILE_FILE}: [spark] conf must be a table of Spark settings, got {conf!r}"[
                    :200
                ]
            )
        conf = {**conf, "spark.jars": ",".join(spark_jars())}
        # The classes a driver loads, mapped from make setup's archive when there is one.
        archive = class_archive.driver_options()
        if archive:
            options = conf.get("spark.driver.extraJavaOptions", "")
            conf["spark.driver.extraJavaOptions"] = f"{options} {archive}".strip()
        spark["conf"] = conf
        return raw


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {_fill(key, values): _fill(item, values) for key, item in value.items()}
    if isinstance(value, str):
        for name, replacement in values.items():
            value = value.replace("{" + name + "}", replacement)
    return value


PROVIDER = LocalProfileProvider()
