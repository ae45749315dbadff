"""Settings of the native local stack, read from ``stack.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark.settings import SettingsError, resolve_placeholders

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
STACK_FILE = PACKAGE_DIR / "stack.toml"
JVM_CACHE = PROJECT_ROOT / ".cache" / "jvm"
NODE_DIR = PACKAGE_DIR / "node"

# Azurite's fixed, publicly documented development account. It is not a secret and is
# valid only against the emulator, which is why it may appear in the local profile.
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class KafkaSettings:
    host: str
    port: int
    controller_port: int
    heap: str
    default_partitions: int
    start_timeout_s: float
    image: str
    # The Event-Hubs-like SASL_SSL listener (see local_stack/eventhubs.py).
    sasl_port: int
    eventhubs_namespace: str

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AzuriteSettings:
    host: str
    blob_port: int
    queue_port: int
    table_port: int
    account: str
    lake_container: str
    start_timeout_s: float
    image: str

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={EMULATOR_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint=http://{self.host}:{self.queue_port}/{self.account};"
            f"TableEndpoint=http://{self.host}:{self.table_port}/{self.account};"
        )


@dataclass(frozen=True)
class KeyVaultSettings:
    """The local Key Vault endpoint (https) and its managed-identity endpoint (http)."""

    host: str
    port: int
    identity_port: int
    start_timeout_s: float

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://{self.host}:{self.identity_port}/msi/token"


@dataclass(frozen=True)
class PrefectSettings:
    host: str
    port: int
    work_pool: str
    start_timeout_s: float
    home: Path

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"


# Who runs Kafka and Azurite: the project, as native processes (`up` starts them), or
# someone else, such as docker compose (`up` only checks that they answer).
SERVICE_MODES = ("native", "external")


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    kafka: KafkaSettings
    azurite: AzuriteSettings
    keyvault: KeyVaultSettings
    prefect: PrefectSettings
    services: str = "native"  # SERVICE_MODES

    @property
    def external_services(self) -> bool:
        return self.services == "external"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def simulations_dir(self, profile: str) -> Path:
        """Where the simulator keeps a run's manifest and truth by default, named after the
        topic: ``simulations`` for the local profile, ``simulations/<profile>`` for another,
        whose workspace (and topic) names are the local ones' too (both profiles' deployments
        run workspace main): neither overwrites the other's, and dropping a local workspace
        (``simulations/<workspace>.*``) keeps another profile's."""
        root = self.state_dir / "simulations"
        return root if profile == "local" else root / profile


def load_stack_settings(path: Path = STACK_FILE) -> StackSettings:
    """Read ``stack.toml``, fill placeholders from the environment, validate; a
    ``SettingsError`` naming the file and the setting when it cannot."""
    try:
        with path.open("rb") as handle:
            raw = resolve_placeholders(tomllib.load(handle))
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise SettingsError(f"{path} cannot be read: {error.strerror}") from None

    def get(key: str) -> Any:
        value: Any = raw
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise SettingsError(f"{path}: setting {key} is missing")
            value = value[part]
        return value

    ports: dict[int, str] = {}

    def port(key: str) -> int:
        number = _port(key, get(key))
        if number in ports:  # two services on one port: the second cannot start
            raise SettingsError(
                f"stack settings {ports[number]} and {key} are both port {number}:"
                " every service needs its own"
            )
        ports[number] = key
        return number

    def seconds(key: str) -> float:
        return _seconds(key, get(key))

    def text(key: str) -> str:
        value = get(key)
        if not isinstance(value, str) or not value.strip():
            raise SettingsError(f"stack setting {key} must be a non-empty string, got {value!r}")
        return value.strip()

    host = text("host")
    services = text("services")
    if services not in SERVICE_MODES:
        raise SettingsError(
            f"stack setting services (REELHOUSE_STACK_SERVICES) must be native or external,"
            f" got {services!r}"
        )
    state_dir = Path(text("state_dir"))
    if not state_dir.is_absolute():
        state_dir = PROJECT_ROOT / state_dir
    return StackSettings(
        state_dir=state_dir,
        services=services,
        kafka=KafkaSettings(
            host=host,
            port=port("kafka.port"),
            controller_port=port("kafka.controller_port"),
            heap=text("kafka.heap"),
            default_partitions=_positive(
                "kafka.default_partitions", get("kafka.default_partitions")
            ),
            start_timeout_s=seconds("kafka.start_timeout_s"),
            image=text("kafka.image"),
            sasl_port=port("kafka.sasl_port"),
            eventhubs_namespace=text("kafka.eventhubs_namespace"),
        ),
        azurite=AzuriteSettings(
            host=host,
            blob_port=port("azurite.blob_port"),
            queue_port=port("azurite.queue_port"),
            table_port=port("azurite.table_port"),
            account=text("azurite.account"),
            lake_container=text("azurite.lake_container"),
            start_timeout_s=seconds("azurite.start_timeout_s"),
            image=text("azurite.image"),
        ),
        keyvault=KeyVaultSettings(
            host=host,
            port=port("keyvault.port"),
            identity_port=port("keyvault.identity_port"),
            start_timeout_s=seconds("keyvault.start_timeout_s"),
        ),
        prefect=PrefectSettings(
            host=host,
            port=port("prefect.port"),
            work_pool=text("prefect.work_pool"),
            start_timeout_s=seconds("prefect.start_timeout_s"),
            home=state_dir / "prefect",
        ),
    )


def _seconds(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise SettingsError(f"stack setting {key} must be a number of seconds, got {value!r}")
    return number


def _port(key: str, value: Any) -> int:
    port = _positive(key, value)
    if port > 65535:
        raise SettingsError(f"stack setting {key} must be a port number, got {value!r}")
    return port


def _positive(key: str, value: Any) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)  # TOML's true is no number, nor is 1.5 a whole one
        number = int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"stack setting {key} must be an integer, got {value!r}") from None
    if number <= 0:
        raise SettingsError(f"stack setting {key} must be positive, got {value!r}")
    return number
