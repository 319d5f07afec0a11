"""Engines: a generator family together with its own dependency set.

========  ======================================  =========================================
engine    generators                              environment
========  ======================================  =========================================
``core``  GaussianCopula, CTGAN, TVAE, CopulaGAN,  ``pyproject.toml`` extras + constraints/
          MST, AIM, PATE-CTGAN, DP-CTGAN; every    core.txt; SDMetrics and Anonymeter
          validate stage (SDMetrics, Anonymeter)
``argn``  TabularARGN (``mostlyai-engine``)        the lock constraints/argn.txt (numpy 2,
                                                  opacus 1.6, torch 2.13)
========  ======================================  =========================================

The two cannot share one environment (anonymeter pins numpy < 1.27, smartnoise-synth pins
opacus < 0.15, mostlyai-engine needs numpy >= 2 and opacus >= 1.6), so only the stage protocol
crosses an engine boundary: artifacts through the store, and a JSON result. On a cluster each
engine is one runner image (:func:`image_for_stage`); on a laptop each engine is one cached
virtual environment (:func:`ensure_environment`), and ``tabular-runner run`` runs the train and
generate stages of an ``argn`` job there as a subprocess (:func:`run_stage`).

``auto`` starts in ``core``: its train stage picks the generator; when the pick belongs to
another engine it stores the pick (``stages/plan.json``) and hands over (``"handoff": "argn"``
in its result); the same stage then runs again in that engine and follows the stored plan.

This module imports only the standard library at import time: ``scripts/venv.sh argn`` runs it
with a bare Python (``python -m tabular_runner.engines install argn``) to build the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tabular_runner.errors import EngineError, TabularError, UserInputError

EngineName = Literal["core", "argn"]
CORE: EngineName = "core"
ARGN: EngineName = "argn"
ENGINES: tuple[EngineName, ...] = (CORE, ARGN)

_GENERATOR_ENGINES: dict[str, EngineName] = {"tabularargn": ARGN}
"""Generator type value -> engine; every other generator (and ``auto``) starts in core."""

_MARKER_MODULES: dict[EngineName, str] = {CORE: "sdv", ARGN: "mostlyai.engine"}
"""A module whose presence says an environment holds the engine's generators."""

_DESCRIPTIONS: dict[EngineName, str] = {
    CORE: "SDV, CTGAN, SmartNoise; SDMetrics and Anonymeter for every validate stage",
    ARGN: "MOSTLY AI TabularARGN (mostlyai-engine 2.7.3: numpy 2, torch 2.13, opacus 1.6)",
}

STAGE_TIMEOUT_S = 24 * 3600.0
"""Upper bound for one engine subprocess (training has its own, much shorter, time caps)."""

Notify = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201 - progress of a long install


# ---------------------------------------------------------------------------------------
# Pure routing: which engine, which image


def _type_value(generator_type: object) -> str:
    return str(getattr(generator_type, "value", generator_type))


def engine_for(generator_type: object) -> EngineName:
    """Return the engine whose environment trains and samples ``generator_type``.

    Args:
        generator_type: A :class:`~tabular_runner.spec.GeneratorType` or its value.

    ``auto`` maps to ``core``: its train stage starts there and hands over when it picks a
    generator of another engine.
    """
    return _GENERATOR_ENGINES.get(_type_value(generator_type), CORE)


def image_for_stage(stage: str, generator_type: object, images: Mapping[str, str]) -> str:
    """Return the runner image a stage Job of a job with ``generator_type`` must use.

    Validation always runs in the core image (SDMetrics, Anonymeter); train and generate run
    in the image of the generator's engine. For ``auto``, pass the generator the train stage
    chose (``generator`` of its result) once it is known; before that, ``auto`` means core.

    Args:
        stage: ``train``, ``generate`` or ``validate``.
        generator_type: The job's generator type (or its value).
        images: Engine name -> image reference (the chart's ``images.runner.<engine>``).

    Raises:
        ValueError: for an unknown stage or an engine missing from ``images``.
    """
    if stage not in ("train", "generate", "validate"):
        raise ValueError(f"unknown stage {stage!r}")
    engine = CORE if stage == "validate" else engine_for(generator_type)
    if engine not in images:
        raise ValueError(f"no runner image configured for engine {engine!r}")
    return images[engine]


def current_engine() -> EngineName:
    """The engine this process runs as: ``$AUMOS_ENGINE`` (set by images and subprocesses)."""
    value = os.environ.get("AUMOS_ENGINE", CORE)
    return ARGN if value == ARGN else CORE


def has_engine(engine: EngineName) -> bool:
    """Return whether this Python environment holds ``engine``'s generators (no import)."""
    try:
        return importlib.util.find_spec(_MARKER_MODULES[engine]) is not None
    except (ImportError, ValueError):  # a missing parent package
        return False


def auto_may_use(engine: EngineName) -> bool:
    """Return whether ``auto`` may pick generators of ``engine``.

    ``$AUMOS_AUTO_ENGINES`` (comma-separated, default ``core,argn``) narrows the choice, e.g.
    on a cluster without the argn image, or a laptop that must not build the environment.
    """
    allowed = os.environ.get("AUMOS_AUTO_ENGINES", ",".join(ENGINES))
    return engine in {part.strip() for part in allowed.split(",")}


# ---------------------------------------------------------------------------------------
# Local environments (one cached virtual environment per engine)


@dataclass(frozen=True)
class EngineEnvironment:
    """Where an engine's cached virtual environment lives."""

    engine: EngineName
    path: Path
    constraints: Path

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    @property
    def log(self) -> Path:
        """The install log, kept next to the environment."""
        return self.path.with_name(self.path.name + ".log")

    @property
    def complete(self) -> bool:
        """True once an install finished (the marker is written last)."""
        return (self.path / ".complete").is_file()


def project_root() -> Path:
    """The checkout the runner runs from (``$AUMOS_PROJECT_ROOT`` overrides).

    Raises:
        EngineError: when the runner is not running from a source checkout.
    """
    override = os.environ.get("AUMOS_PROJECT_ROOT")
    root = Path(override) if override else Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise EngineError(
            f"cannot find the project checkout (no pyproject.toml in {root}) to install into "
            "an engine environment; set AUMOS_PROJECT_ROOT or use the engine's runner image"
        )
    return root


def cache_dir() -> Path:
    """``$AUMOS_CACHE_DIR`` or ``~/.cache/aumos-tabular-engine`` (shared with scripts/venv.sh)."""
    override = os.environ.get("AUMOS_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "aumos-tabular-engine"


def constraints_path(engine: EngineName) -> Path:
    """The engine's lock: ``$AUMOS_CONSTRAINTS_DIR/<engine>.txt`` or the checkout's."""
    override = os.environ.get("AUMOS_CONSTRAINTS_DIR")
    folder = Path(override) if override else project_root() / "constraints"
    return folder / f"{engine}.txt"


def environment_key(constraints: bytes, engine: str) -> str:
    """Cache key of an engine environment: the lock's bytes and the engine's name.

    The same formula as ``scripts/venv.sh`` (``{ cat lock; echo engine; } | sha256sum``), so
    the script and the runner build and reuse one environment.
    """
    return hashlib.sha256(constraints + engine.encode() + b"\n").hexdigest()[:12]


def environment(engine: EngineName) -> EngineEnvironment:
    """Describe ``engine``'s local environment (nothing is created).

    Raises:
        UserInputError: for ``core``, whose environment is ``scripts/venv.sh core``'s.
        EngineError: when the engine's lock file cannot be read.
    """
    if engine != ARGN:
        raise UserInputError(
            "engine",
            f"{engine!r} has no separately installed environment",
            "the core engine is the environment the runner itself runs in; try argn",
        )
    lock = constraints_path(engine)
    try:
        data = lock.read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read the {engine} engine's lock {lock} ({exc})") from None
    key = environment_key(data, engine)
    return EngineEnvironment(engine, cache_dir() / "venvs" / f"{engine}-{key}", lock)


def install_commands(env: EngineEnvironment, root: Path, base_python: str) -> list[list[str]]:
    """The commands that build ``env`` from nothing, in order (pure; for tests and docs)."""
    python = str(env.python)
    return [
        [base_python, "-m", "venv", str(env.path)],
        [python, "-m", "pip", "install", "--no-deps", "-r", str(env.constraints)],
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(root)],
        # Imports what a train stage imports: a broken wheel fails here, not mid-job.
        [python, "-c", "import mostlyai.engine, tabular_runner.generators.argn_adapter"],
    ]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The same lock file as scripts/venv.sh: parallel test sessions wait for one builder.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _base_python() -> str:
    return os.environ.get("AUMOS_BASE_PYTHON") or sys.executable


def ensure_environment(engine: EngineName, notify: Notify = _stderr) -> EngineEnvironment:
    """Return ``engine``'s environment, building it first when it does not exist yet.

    Args:
        engine: The engine (``argn``).
        notify: Receives one progress line before a build starts (stderr by default).

    Raises:
        EngineError: one line naming the command that failed and the log to read.
    """
    env = environment(engine)
    if env.complete:
        return env
    root = project_root()
    with _locked(env.path.parent / f".{engine}.lock"):
        if env.complete:  # another process built it while we waited
            return env
        notify(
            f"[engine] creating the '{engine}' environment in {env.path} "
            f"(first use: several minutes; log: {env.log})"
        )
        _build(env, root)
    return env


def _build(env: EngineEnvironment, root: Path) -> None:
    import shutil

    shutil.rmtree(env.path, ignore_errors=True)
    env.path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with env.log.open("w") as log:
        for command in install_commands(env, root, _base_python()):
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            try:
                code = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, env=child_env, check=False
                ).returncode
            except OSError as exc:
                code, log_line = -1, f"{exc}\n"
                log.write(log_line)
            if code != 0:
                shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
                raise EngineError(
                    f"cannot create the '{env.engine}' engine environment: `{shown}` failed "
                    f"(exit {code}); see {env.log}"
                )
    (env.path / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))


# ---------------------------------------------------------------------------------------
# Running a stage in another engine


def stage_command(
    env: EngineEnvironment,
    stage: str,
    job_json: str,
    store_uri: str,
    base_dir: Path,
    termination_log: Path,
) -> list[str]:
    """The command line of one stage in ``env`` (the same as a stage Job's container)."""
    return [
        str(env.python),
        "-m",
        "tabular_runner",
        "stage",
        stage,
        "--job-json",
        job_json,
        "--store",
        store_uri,
        "--base-dir",
        str(base_dir),
        "--termination-log",
        str(termination_log),
    ]


def error_from_result(result: Mapping[str, Any], exit_code: int, log: Path) -> TabularError:
    """Turn a failed stage's result into the same error the stage raised (pure).

    A user error (exit 2) keeps its one-line message and exit code; anything else becomes an
    :class:`EngineError` that names the log.
    """
    message = str(result.get("error") or "")
    code = int(result.get("exitCode", exit_code) or exit_code)
    if message and code == UserInputError.exit_code:
        error = UserInputError("", message)
        return error
    if message and code == EngineError.exit_code:
        return EngineError(message)
    if message:
        return EngineError(f"{message} (see {log})")
    return EngineError(
        f"the {result.get('stage', 'stage')} stage crashed in its engine (exit {exit_code}); "
        f"see {log}"
    )


def run_stage(
    engine: EngineName,
    stage: str,
    job_wire: Mapping[str, Any],
    store_root: Path,
    base_dir: Path,
    notify: Notify = _stderr,
    log_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one stage of a job in ``engine``'s environment; return its result.

    Args:
        engine: The engine to run in (its environment is built on first use).
        stage: ``train`` or ``generate``.
        job_wire: The SynthesisJob in its JSON form.
        store_root: Local folder of the job's artifacts (``file://`` store).
        base_dir: Folder relative ``file://`` uris of the job resolve against.
        notify: Progress lines (the environment build).
        log_dir: Where the stage's stderr log goes (a temporary folder by default).
        extra_env: More environment for the stage (``AUMOS_SCHEMA_JSON`` of a multi-table
            job: the schema travels like a stage Job's environment on a cluster).

    Raises:
        UserInputError: the stage's own user error, same one-line message.
        EngineError: when the environment cannot be built or the stage fails otherwise.
    """
    env = ensure_environment(engine, notify)
    logs = log_dir or Path(tempfile.mkdtemp(prefix="aumos-engine-"))
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{engine}-{stage}.log"
    termination = logs / f"{engine}-{stage}.result.json"
    termination.unlink(missing_ok=True)
    command = stage_command(
        env, stage, json.dumps(dict(job_wire)), f"file://{store_root}", base_dir, termination
    )
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    package_parent = Path(__file__).resolve().parents[1]
    if (package_parent.parent / "pyproject.toml").is_file():
        # A source checkout: the engine runs this very code, whichever checkout its
        # editable install last pointed at.
        child_env["PYTHONPATH"] = str(package_parent)
    child_env.update(extra_env or {})
    child_env.update(
        AUMOS_ENGINE=engine,
        # Tabular models need no hub weights; never let a library try the network.
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    with log.open("w") as handle:
        proc = subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=child_env,
            check=False,
            timeout=STAGE_TIMEOUT_S,
        )
    result = _read_result(termination)
    if proc.returncode != 0 or not result.get("ok", False):
        raise error_from_result(result or {"stage": stage}, proc.returncode or 1, log)
    # The compact result may be slimmed for the termination message; the store has it all.
    full = store_root / "stages" / f"{stage}.json"
    if full.is_file():
        loaded: dict[str, Any] = json.loads(full.read_text())
        return loaded
    return result


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------------
# ``tabular-runner engines list|install|path`` (also ``python -m tabular_runner.engines``)


def describe(engine: EngineName) -> dict[str, Any]:
    """One engine's name, generators, and (for separately installed ones) its environment."""
    info: dict[str, Any] = {"engine": engine, "description": _DESCRIPTIONS[engine]}
    if engine == CORE:
        info["environment"] = sys.prefix
        info["installed"] = has_engine(CORE)
    else:
        try:
            env = environment(engine)
            info["environment"] = str(env.path)
            info["installed"] = env.complete
        except TabularError as exc:
            info["environment"] = None
            info["installed"] = False
            info["problem"] = exc.message
    return info


def command(action: str, name: str | None, notify: Notify = _stderr) -> list[str]:
    """Carry out ``engines <action> [name]``; return the lines to print.

    Raises:
        UserInputError: for an unknown engine or a missing name.
        EngineError: when an install fails.
    """
    if action == "list":
        lines = []
        for each in ENGINES:
            info = describe(each)
            state = "installed" if info["installed"] else "not installed"
            lines.append(f"{each}\t{state}\t{info['environment'] or '-'}\t{info['description']}")
        return lines
    if name not in ENGINES:
        raise UserInputError(
            "engine", f"unknown engine {name!r}", f"choose one of {', '.join(ENGINES)}"
        )
    engine: EngineName = ARGN if name == ARGN else CORE
    if action == "path":
        return [str(environment(engine).path if engine == ARGN else Path(sys.prefix))]
    if action == "install":
        if engine == CORE:
            return [sys.prefix]
        return [str(ensure_environment(engine, notify).path)]
    raise UserInputError("engines", f"unknown action {action!r}", "use list, install or path")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tabular_runner.engines list|install|path [ENGINE]`` (no pydantic needed)."""
    parser = argparse.ArgumentParser(prog="tabular_runner.engines")
    parser.add_argument("action", choices=["list", "install", "path"])
    parser.add_argument("engine", nargs="?")
    args = parser.parse_args(argv)
    try:
        for line in command(args.action, args.engine):
            print(line)  # noqa: T201
    except TabularError as exc:
        print(f"error: {exc.message}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
