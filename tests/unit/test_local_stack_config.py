"""Local stack configuration: docker-compose parity, jar naming, port conflicts."""

from __future__ import annotations

import re
import socket
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import replace

import pytest
import yaml

from local_stack.jvm import POM, artifact_name
from local_stack.services import Azurite, KafkaBroker, PrefectWorker, StackError
from local_stack.settings import PACKAGE_DIR, PROJECT_ROOT, STACK_FILE, load_stack_settings
from spark.settings import SettingsError
from tests.ports import free_port, silent_port

pytestmark = pytest.mark.unit

COMPOSE = PACKAGE_DIR / "docker-compose.yml"


def _pom_property(name: str) -> str:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ElementTree.parse(POM).getroot().find(f"m:properties/m:{name}", namespace).text


def _published_ports(service: dict) -> set[int]:
    return {int(mapping.split(":")[-1]) for mapping in service["ports"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: text + "\n[kafka\n", "{path} is not valid TOML"),
        (
            lambda text: re.sub(r"(?m)^image = .*\n", "", text, count=1),
            "{path}: setting kafka.image is missing",
        ),
        (
            lambda text: re.sub(r"(?m)^start_timeout_s = .*$", 'start_timeout_s = "1m"', text),
            "kafka.start_timeout_s must be a number of seconds, got '1m'",
        ),
        (
            lambda text: re.sub(r"(?m)^state_dir = .*$", "state_dir = 5", text),
            "stack setting state_dir must be a non-empty string, got 5",
        ),
        (
            lambda text: re.sub(r"(?m)^port = .*$", "port = true", text, count=1),
            "stack setting kafka.port must be an integer, got True",
        ),
        (
            lambda text: re.sub(r"(?m)^heap = .*$", 'heap = ""', text),
            "stack setting kafka.heap must be a non-empty string, got ''",
        ),
    ],
)
def test_a_bad_stack_file_is_named_with_its_setting(tmp_path, change, message):
    path = tmp_path / "stack.toml"
    path.write_text(change(STACK_FILE.read_text()))
    with pytest.raises(SettingsError, match=re.escape(message.format(path=path))) as error:
        load_stack_settings(path)
    assert "\n" not in str(error.value)


def test_services_are_native_unless_set_external(monkeypatch):
    assert load_stack_settings().services == "native"
    monkeypatch.setenv("REELHOUSE_STACK_SERVICES", "external")
    assert load_stack_settings().external_services
    monkeypatch.setenv("REELHOUSE_STACK_SERVICES", "docker")
    with pytest.raises(SettingsError) as error:
        load_stack_settings()
    assert str(error.value) == (
        "stack setting services (REELHOUSE_STACK_SERVICES) must be native or external, got 'docker'"
    )


def test_external_services_that_do_not_answer_are_one_line_and_never_stopped(tmp_path, monkeypatch):
    """docker compose runs them: the project neither starts nor stops them, and names
    what to do when nothing answers on their ports."""
    from dataclasses import replace

    from local_stack import services
    from local_stack.services import Azurite, KafkaBroker, StackError
    from tests.ports import free_port

    monkeypatch.setattr(services, "EXTERNAL_WAIT_S", 0.3)
    monkeypatch.setenv("REELHOUSE_STACK_SERVICES", "external")
    for name in ("KAFKA_PORT", "AZURITE_BLOB_PORT", "AZURITE_QUEUE_PORT", "AZURITE_TABLE_PORT"):
        monkeypatch.setenv(f"REELHOUSE_{name}", str(free_port()))
    settings = replace(load_stack_settings(), state_dir=tmp_path)
    for service in (KafkaBroker(settings), Azurite(settings)):
        status = service.status()
        assert (status.pid, status.healthy, status.detail) == (
            None,
            False,
            "external, not answering",
        )
        with pytest.raises(StackError) as error:
            service.start()
        assert str(error.value) == (
            f"{service.name}: nothing answers on port {service.ports()[0]}, and the stack's"
            " services are external (REELHOUSE_STACK_SERVICES=external): start them (docker"
            " compose -f local_stack/docker-compose.yml up -d), or unset it to run them natively"
        )
        assert service.stop() == f"{service.name}: external, not stopped"
    assert not (tmp_path / "run").exists()  # no pid file, no process of ours


def test_two_services_on_one_port_are_refused_before_either_starts(monkeypatch):
    monkeypatch.setenv("REELHOUSE_KEYVAULT_PORT", "10600")
    monkeypatch.setenv("REELHOUSE_KEYVAULT_IDENTITY_PORT", "10600")
    with pytest.raises(SettingsError) as error:
        load_stack_settings()
    assert str(error.value) == (
        "stack settings keyvault.port and keyvault.identity_port are both port 10600:"
        " every service needs its own"
    )


def test_compose_images_and_ports_agree_with_the_local_profile():
    compose = yaml.safe_load(COMPOSE.read_text())
    settings = load_stack_settings()
    kafka, azurite = compose["services"]["kafka"], compose["services"]["azurite"]

    assert kafka["image"] == settings.kafka.image
    assert settings.kafka.image == f"apache/kafka:{_pom_property('kafka.version')}"
    assert _published_ports(kafka) == {settings.kafka.port, settings.kafka.controller_port}
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    package = (PACKAGE_DIR / "node" / "package.json").read_text()
    azurite_version = re.search(r'"azurite": "([^"]+)"', package).group(1)
    assert azurite["image"] == settings.azurite.image
    assert settings.azurite.image.endswith(f":{azurite_version}")
    assert _published_ports(azurite) == {
        settings.azurite.blob_port,
        settings.azurite.queue_port,
        settings.azurite.table_port,
    }


def test_compose_broker_is_configured_as_the_native_one(tmp_path):
    """Every broker setting of the native stack but its listeners and paths, in the
    image's KAFKA_<NAME> form, with the same value; and the log on the volume."""
    kafka = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]
    environment = {
        name.removeprefix("KAFKA_").lower().replace("_", "."): value
        for name, value in kafka["environment"].items()
    }
    native = KafkaBroker(replace(load_stack_settings(), state_dir=tmp_path)).server_properties()
    own = ("listener", "controller.quorum", "log.dirs", "sasl", "ssl", "node.id", "process.")
    shared = {key: value for key, value in native.items() if not key.startswith(own)}
    shared = {key: value for key, value in shared.items() if "listener" not in key}

    assert {key: environment.get(key) for key in shared} == shared
    assert environment["log.dirs"] in {volume.split(":")[1] for volume in kafka["volumes"]}


def test_native_and_compose_azurite_take_the_same_switches():
    """Both skip the API-version check, accept loose requests and send no telemetry (offline,
    a pending report held Azurite 10-30 s past its stop signal)."""
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["azurite"]["command"].split()
    native = Azurite(load_stack_settings()).command()
    switches = {"--skipApiVersionCheck", "--loose", "--disableTelemetry"}

    assert switches <= set(compose)
    assert switches <= set(native)


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("wildfly-openssl-2.2.5.Final.jar", "wildfly-openssl"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("kafka-clients-3.9.2.jar", "kafka-clients"),
    ],
)
def test_artifact_name_strips_only_the_version(jar, artifact):
    assert artifact_name(jar) == artifact


def test_a_port_held_by_another_program_is_named_in_the_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = load_stack_settings()
        settings = replace(
            settings,
            state_dir=tmp_path,
            kafka=replace(settings.kafka, port=port, controller_port=port + 1),
        )
        with pytest.raises(StackError, match=rf"port {port} needed by kafka is held by python"):
            KafkaBroker(settings).start()


def test_make_help_lists_every_verb():
    output = subprocess.run(
        ["make", "-s", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for verb in (
        "setup",
        "stack-up",
        "stack-down",
        "stack-status",
        "test",
        "lint",
        "local-run",
        "bench",
        "quality-report",
    ):
        assert re.search(rf"^  {verb} +\S", output, re.M), verb


def test_a_worker_is_healthy_by_its_own_start_not_an_earlier_ones(tmp_path):
    settings = replace(load_stack_settings(), state_dir=tmp_path)
    worker = PrefectWorker(settings)
    worker.log_file.parent.mkdir(parents=True)
    worker.log_file.write_text("Worker 'reelhouse-local-worker' started!\nearlier start: died\n")
    worker.log_start = worker.log_file.stat().st_size  # as start() sets it

    assert not worker.is_healthy()
    with worker.log_file.open("a") as log:
        log.write("Worker 'reelhouse-local-worker' started!\n")
    assert worker.is_healthy()


def test_a_prefect_command_that_hangs_is_named_not_a_traceback(tmp_path, monkeypatch):
    from local_stack.stack import LocalStack

    hanging = tmp_path / "prefect"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    monkeypatch.setattr("local_stack.stack._prefect_binary", lambda: str(hanging))
    monkeypatch.setattr("local_stack.stack.PREFECT_COMMAND_TIMEOUT_S", 0.5)
    with pytest.raises(StackError, match=r"^prefect work-pool ls did not finish in 0.5 s \(is"):
        LocalStack()._prefect("work-pool", "ls")


def test_azure_env_of_a_stopped_vault_is_refused(tmp_path, monkeypatch):
    from local_stack.stack import LocalStack

    vault = free_port()
    identity = next(port for port in iter(free_port, None) if port != vault)
    monkeypatch.setenv("REELHOUSE_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("REELHOUSE_KEYVAULT_PORT", str(vault))
    monkeypatch.setenv("REELHOUSE_KEYVAULT_IDENTITY_PORT", str(identity))
    stack = LocalStack()
    header = stack.keyvault.identity_header_file
    header.parent.mkdir(parents=True, exist_ok=True)
    header.write_text("left from an earlier start\n")  # keyvault-down keeps it
    with pytest.raises(StackError, match=r"^the local Key Vault is not running: run"):
        stack.azure_environment()


def test_a_broker_that_never_answers_is_given_up_on_without_leaving_a_thread():
    """A port that takes connections and says nothing: kafka-python's admin client starts
    its IO thread before it bootstraps; a failed health check stops it."""
    import threading

    from local_stack.services import kafka_answers

    def kafka_threads() -> list[str]:
        return [thread.name for thread in threading.enumerate() if "kafka" in thread.name]

    before = kafka_threads()
    with silent_port() as (port, accepted):
        assert not any(kafka_answers(f"127.0.0.1:{port}", 0.5) for _ in range(3))
    assert accepted and kafka_threads() == before
