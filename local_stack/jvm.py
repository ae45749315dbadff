"""JVM artifacts: resolved once from Maven Central into ``.cache/jvm``, then used offline.

``python -m local_stack.jvm resolve`` is what ``make setup`` runs. The broker and
Spark each get their own folder because they need different kafka-clients versions.
Jars the pyspark wheel already bundles are removed from the Spark folder, so the
classpath never holds two versions of one library.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from local_stack.settings import JVM_CACHE, PACKAGE_DIR, PROJECT_ROOT
from spark.settings import SettingsError

POM = PACKAGE_DIR / "jvm" / "pom.xml"
MAVEN_REPO = PROJECT_ROOT / ".cache" / "m2"
CLASSPATHS = ("broker", "spark")
# Libraries pyspark bundles under another artifact name (same classes inside).
_BUNDLED_ALIASES = {"jcl-over-slf4j": "commons-logging"}
_VERSION_SUFFIX = re.compile(r"-\d+\.\d[^-]*(-[A-Za-z0-9.]+)*\.jar$")


class JvmArtifactsMissing(SettingsError):
    """The jar cache is empty or incomplete; ``make setup`` fills it. A settings error:
    the local profile names these jars, and every command names it in one line."""


def classpath_dir(name: str) -> Path:
    return JVM_CACHE / name


def broker_classpath() -> str:
    """The Kafka broker's classpath (a ``java -cp`` wildcard)."""
    return str(_require(classpath_dir("broker"), "kafka_2.13-") / "*")


def spark_jars() -> list[str]:
    """Absolute paths of the jars Spark loads through ``spark.jars``."""
    folder = _require(classpath_dir("spark"), "delta-spark_")
    return sorted(str(path) for path in folder.glob("*.jar"))


def artifact_name(jar_file: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    return _VERSION_SUFFIX.sub("", jar_file)


def resolve() -> None:
    """Copy every artifact of the pom into the cache (idempotent)."""
    if shutil.which("mvn") is None:
        raise JvmArtifactsMissing("Maven (mvn) is not on PATH; install Maven 3.8+ and retry")
    for name in CLASSPATHS:
        target = classpath_dir(name)
        staging = target.with_name(f"{name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "-P",
            name,
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DexcludeScope=provided",
            f"-Dmaven.repo.local={MAVEN_REPO}",
        ]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            errors = [line for line in completed.stdout.splitlines() if "ERROR" in line]
            reason = errors[0] if errors else completed.stderr.strip()
            raise JvmArtifactsMissing(f"Maven could not resolve the {name} jars: {reason}")
        if name == "spark":
            _drop_jars_bundled_with_pyspark(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    print(f"JVM artifacts ready in {JVM_CACHE}")


def _drop_jars_bundled_with_pyspark(folder: Path) -> None:
    import pyspark

    bundled = {
        artifact_name(jar.name) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")
    }
    bundled |= {alias for name, alias in _BUNDLED_ALIASES.items() if name in bundled}
    for jar in folder.glob("*.jar"):
        if artifact_name(jar.name) in bundled:
            jar.unlink()


def _require(folder: Path, marker: str) -> Path:
    if not any(folder.glob(f"{marker}*.jar")):
        raise JvmArtifactsMissing(f"no {marker}*.jar in {folder}; run `make setup` first")
    return folder


if __name__ == "__main__":
    if sys.argv[1:] != ["resolve"]:
        sys.exit("usage: python -m local_stack.jvm resolve")
    try:
        resolve()
    except JvmArtifactsMissing as error:
        sys.exit(f"error: {error}")
