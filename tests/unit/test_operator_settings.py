"""The operator reads exactly the environment the chart gives it (one set of names).

Renders the chart with helm (default and full values) and checks every ``AUMOS_*`` variable
of the operator container — ConfigMap keys, Secret references, the downward API — against
the fields of ``OperatorSettings``; then that the settings parse the rendered ConfigMap.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tabular_operator.settings import OperatorSettings
from tests.unit.test_chart import VALUES, documents, helm_template

pytestmark = pytest.mark.unit


def _operator_env(values: list[Path]) -> tuple[dict[str, str], set[str]]:
    docs = documents(helm_template(values, crds=False))
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    extra: set[str] = set()
    for path in values:  # operator.extraEnv is the user's own, not the chart's
        extra |= {
            e["name"] for e in yaml.safe_load(path.read_text())["operator"].get("extraEnv", [])
        }
    names = set(config) | {e["name"] for e in container.get("env", [])} - extra
    return config, names


@pytest.mark.parametrize("values", list(VALUES), ids=list(VALUES))
def test_every_variable_the_chart_sets_is_a_setting(values: str) -> None:
    # Setup
    config, names = _operator_env(VALUES[values])
    fields = {f"AUMOS_{name.upper()}" for name in OperatorSettings.model_fields}

    # Assert
    unknown = sorted(n for n in names if n.startswith("AUMOS_") and n not in fields)
    assert unknown == [], f"the chart sets variables the operator does not read: {unknown}"
    parsed = OperatorSettings(**{k.removeprefix("AUMOS_").lower(): v for k, v in config.items()})
    assert parsed.s3_bucket_template == config["AUMOS_S3_BUCKET_TEMPLATE"]
    assert "{tenant}" in parsed.s3_bucket_template
    assert parsed.s3_output_retention_days == int(config["AUMOS_S3_OUTPUT_RETENTION_DAYS"])


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUMOS_RUNNER_IMAGE_ARGN", "registry.local/runner:9-argn")
    monkeypatch.setenv("AUMOS_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("AUMOS_S3_SECRET_KEY", "not-logged")
    settings = OperatorSettings()
    assert settings.images["argn"] == "registry.local/runner:9-argn"
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert "not-logged" not in repr(settings)
    assert settings.secret("s3_secret_key") == "not-logged"
