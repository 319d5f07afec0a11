"""Engines: routing of generators and stages to engines/images, the environment recipe, the
stage-result protocol, and ``auto`` with TabularARGN. Pure logic; nothing is installed (the
real environment is exercised in tests/integration/test_argn_engine.py). Environment variables
are set with monkeypatch: they are the real configuration interface of the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tabular_runner import engines
from tabular_runner.cli import main
from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.generators import choose_generator, create_synthesizer, resolve_auto
from tabular_runner.pipeline import StageContext, run_all, stage_engine
from tabular_runner.spec import GeneratorSpec, GeneratorType, PrivacySpec, SynthesisJob
from tabular_runner.storage.local import LocalStore

pytestmark = pytest.mark.unit

IMAGES = {"core": "registry/runner:1-core", "argn": "registry/runner:1-argn"}


def _job(generator: str) -> SynthesisJob:
    return SynthesisJob.model_validate(
        {
            "apiVersion": "tabular.aumos.io/v1alpha1",
            "kind": "SynthesisJob",
            "metadata": {"name": "j"},
            "spec": {"source": {"uri": "file://x.csv"}, "generator": {"type": generator}},
        }
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (GeneratorType.TABULARARGN, "argn"),
        ("tabularargn", "argn"),
        (GeneratorType.GAUSSIAN_COPULA, "core"),
        (GeneratorType.CTGAN, "core"),
        (GeneratorType.AIM, "core"),
        (GeneratorType.AUTO, "core"),
    ],
    ids=["argn-enum", "argn-str", "copula", "ctgan", "aim", "auto-starts-in-core"],
)
def test_engine_for(kind: object, expected: str) -> None:
    # Run
    engine = engines.engine_for(kind)

    # Assert
    assert engine == expected


@pytest.mark.parametrize(
    ("stage", "kind", "expected"),
    [
        ("train", GeneratorType.TABULARARGN, "argn"),
        ("generate", GeneratorType.TABULARARGN, "argn"),
        ("validate", GeneratorType.TABULARARGN, "core"),
        ("train", GeneratorType.TVAE, "core"),
        ("validate", GeneratorType.MST, "core"),
        ("train", GeneratorType.AUTO, "core"),
    ],
    ids=["argn-train", "argn-generate", "argn-validate-core", "tvae", "mst-validate", "auto"],
)
def test_image_for_stage(stage: str, kind: GeneratorType, expected: str) -> None:
    # Run
    image = engines.image_for_stage(stage, kind, IMAGES)

    # Assert
    assert image == IMAGES[expected]


@pytest.mark.parametrize(
    ("stage", "images"),
    [("export", IMAGES), ("train", {"core": "x"})],
    ids=["unknown-stage", "no-argn-image"],
)
def test_image_for_stage_refuses(stage: str, images: dict[str, str]) -> None:
    # Run / Assert
    with pytest.raises(ValueError):
        engines.image_for_stage(stage, GeneratorType.TABULARARGN, images)


def test_environment_is_keyed_by_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup
    monkeypatch.setenv("AUMOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUMOS_CONSTRAINTS_DIR", str(tmp_path))
    lock = tmp_path / "argn.txt"
    lock.write_text("mostlyai-engine==2.7.3\n")

    # Run
    first = engines.environment("argn")
    lock.write_text("mostlyai-engine==2.7.4\n")
    second = engines.environment("argn")

    # Assert
    assert first.path.parent == tmp_path / "cache" / "venvs"
    assert first.path.name.startswith("argn-") and first.path != second.path
    assert not first.complete
    assert first.log.name == first.path.name + ".log"


def test_missing_lock_is_an_engine_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup
    monkeypatch.setenv("AUMOS_CONSTRAINTS_DIR", str(tmp_path))

    # Run
    with pytest.raises(EngineError) as caught:
        engines.environment("argn")

    # Assert
    assert "argn.txt" in caught.value.message


def test_install_recipe_uses_the_lock_without_resolution(tmp_path: Path) -> None:
    # Setup
    env = engines.EngineEnvironment("argn", tmp_path / "argn-abc", tmp_path / "argn.txt")

    # Run
    commands = engines.install_commands(env, Path("/src"), "python3")

    # Assert
    assert commands[0] == ["python3", "-m", "venv", str(env.path)]
    assert ["--no-deps", "-r", str(env.constraints)] == commands[1][-3:]
    assert commands[2][-4:] == ["--no-deps", "--no-build-isolation", "-e", "/src"]
    assert all(c[0] == str(env.python) for c in commands[1:])
    assert "import mostlyai.engine" in commands[3][-1]


def test_the_repository_lock_pins_pandas_2_and_leaves_out_torchvision() -> None:
    # Setup
    lock = Path(__file__).resolve().parents[2] / "constraints" / "argn.txt"

    # Run
    pins = dict(
        line.lower().split("==")
        for line in lock.read_text().splitlines()
        if line and not line.startswith("#")
    )

    # Assert
    assert pins["mostlyai-engine"] == "2.7.3"
    assert pins["pandas"].startswith("2.") and pins["numpy"].startswith("2.")
    assert "torchvision" not in pins and "torchaudio" not in pins


@pytest.mark.parametrize(
    ("result", "code", "kind", "exit_code"),
    [
        ({"error": "spec.x: bad — fix it", "exitCode": 2}, 2, UserInputError, 2),
        ({"error": "engine broke", "exitCode": 4}, 4, EngineError, 4),
        ({"error": "boom", "exitCode": 1}, 1, EngineError, 4),
        ({}, 137, EngineError, 4),
    ],
    ids=["user-error-kept", "engine-error", "other-error", "killed"],
)
def test_error_from_result(
    result: dict[str, object], code: int, kind: type[Exception], exit_code: int
) -> None:
    # Run
    error = engines.error_from_result(result, code, Path("/tmp/x.log"))

    # Assert
    assert isinstance(error, kind) and error.exit_code == exit_code
    if kind is UserInputError:
        assert error.message == result["error"]  # the same one line as in the engine
    if not result or result.get("exitCode") == 1:
        assert "/tmp/x.log" in error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("core", False), ("core, argn", True)],
    ids=["default", "core-only", "both"],
)
def test_auto_may_use(value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup
    if value is None:
        monkeypatch.delenv("AUMOS_AUTO_ENGINES", raising=False)
    else:
        monkeypatch.setenv("AUMOS_AUTO_ENGINES", value)

    # Run / Assert
    assert engines.auto_may_use("argn") is expected


@pytest.mark.parametrize(
    ("n_rows", "n_columns", "privacy", "budget", "gpu", "expected"),
    [
        (39_073, 15, None, 300, False, GeneratorType.TABULARARGN),
        (39_073, 15, None, 240, False, GeneratorType.TABULARARGN),
        (39_073, 15, None, 30, False, GeneratorType.GAUSSIAN_COPULA),
        (500, 10, None, 3_600, False, GeneratorType.GAUSSIAN_COPULA),
        (2_000_000, 40, None, 300, False, GeneratorType.GAUSSIAN_COPULA),
        (100_000, 15, PrivacySpec(epsilon=1.0), 600, True, GeneratorType.TABULARARGN),
        (100_000, 15, PrivacySpec(epsilon=1.0), 600, False, GeneratorType.AIM),
        (5_000, 15, PrivacySpec(epsilon=1.0), 600, True, GeneratorType.AIM),
    ],
    ids=[
        "adult-default-budget",
        "adult-240s",
        "adult-tight-budget",
        "tiny",
        "huge-cpu",
        "dp-large-gpu",
        "dp-large-cpu-aim",
        "dp-small-gpu-aim",
    ],
)
def test_auto_with_argn(
    n_rows: int,
    n_columns: int,
    privacy: PrivacySpec | None,
    budget: float,
    gpu: bool,
    expected: GeneratorType,
) -> None:
    # Run
    kind, reason = choose_generator(n_rows, n_columns, privacy, budget, gpu, argn=True)

    # Assert
    assert kind is expected
    assert len(reason) > 20 and "\n" not in reason


def test_auto_without_argn_never_picks_it() -> None:
    # Run
    kind, _ = choose_generator(39_073, 15, None, 300, False, argn=False)

    # Assert
    assert kind is not GeneratorType.TABULARARGN


def test_auto_caps_argn_training_within_the_budget() -> None:
    # Setup
    spec = GeneratorSpec(type=GeneratorType.AUTO, params={"timeBudgetSeconds": 240})

    # Run
    concrete, reason = resolve_auto(spec, 39_073, 15, None, gpu=False, argn=True)

    # Assert
    assert concrete.type is GeneratorType.TABULARARGN
    assert 200 < concrete.params["maxTrainingTimeSeconds"] < 240
    assert "TabularARGN" in reason and "240 s" in reason


def test_tabularargn_outside_its_engine_names_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup: this test environment is core, without mostlyai-engine
    if engines.has_engine("argn"):
        pytest.skip("this environment holds the argn engine")

    # Run
    with pytest.raises(UserInputError) as caught:
        create_synthesizer(GeneratorSpec(type=GeneratorType.TABULARARGN), None)

    # Assert
    assert caught.value.field == "spec.generator.type"
    assert "argn engine" in caught.value.problem and "tabular-runner run" in caught.value.hint


def test_stage_engines_follow_the_trained_generator(tmp_path: Path) -> None:
    # Setup
    store = LocalStore(tmp_path)
    store.put_bytes("stages/train.json", json.dumps({"generator": "tabularargn"}).encode(), "")
    job = _job("auto")

    # Run
    engines_used = {s: stage_engine(s, job, store) for s in ("train", "generate", "validate")}

    # Assert
    assert engines_used == {"train": "core", "generate": "argn", "validate": "core"}


def test_run_all_without_an_engine_runner_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup
    monkeypatch.delenv("AUMOS_ENGINE", raising=False)

    # Run
    with pytest.raises(EngineError) as caught:
        run_all(_job("tabularargn"), LocalStore(tmp_path), StageContext(base_dir=tmp_path))

    # Assert
    assert "argn engine" in caught.value.message and "image" in caught.value.message


def test_cli_engines_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    monkeypatch.setenv("AUMOS_CACHE_DIR", str(tmp_path))

    # Run
    code = main(["engines", "list"])

    # Assert
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split("\t")[0] for line in out] == ["core", "argn"]
    assert "not installed" in out[1] and str(tmp_path) in out[1]


def test_cli_engines_unknown_engine(capsys: pytest.CaptureFixture[str]) -> None:
    # Run
    code = main(["engines", "install", "spark"])

    # Assert
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1
