"""Build, check and describe the project's OCI images (``make images``; docs/images.md).

    python scripts/images.py build [operator core argn]   build, export, SBOM, sizes, --help
    python scripts/images.py base                         the base image alone
    python scripts/images.py sizes | check | sbom | digests
    python scripts/images.py lock                         regenerate constraints/*-hashes.txt

Images are built from ``Dockerfile.operator`` and ``Dockerfile.runner`` with buildah (chroot
isolation: no daemon, no OCI runtime needed), or with ``docker build`` where a Docker daemon
answers. They are tagged with the chart's image names (``images.*`` in values.yaml, tags from
Chart.yaml's appVersion), stay in the builder's local storage (``buildah images``), and are
exported with their SBOM (CycloneDX JSON) and manifest digest to ``.images/`` (git-ignored).

The base is the Dockerfiles' ``PYTHON_IMAGE`` build argument: the pinned upstream Python image
when a registry answers, else a local Debian bookworm base made with debootstrap (Python 3.11,
the same minor version) and imported into buildah's storage; the same Dockerfile either way.
``AUMOS_IMAGE_BASE=upstream|local|auto`` (default auto) or ``PYTHON_IMAGE=ref`` choose.

Errors: every expected failure (a tool missing, a build failing, an image not built) is an
``ImagesError`` with a one-line message naming the fix; ``main`` prints it and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "aumos-tabular-engine"
OUT = REPO / ".images"
CACHE = Path(os.environ.get("AUMOS_CACHE_DIR", Path.home() / ".cache" / "aumos-tabular-engine"))

UID = 10001
UPSTREAM_BASE = "docker.io/library/python:3.11.13-slim-bookworm"
LOCAL_BASE = "localhost/aumos/python-base:3.11-bookworm"
# minbase has groupadd/useradd (passwd); python-is-python3 gives the `python` name the
# Dockerfiles use; python3-venv gives `python -m venv` its ensurepip.
LOCAL_BASE_PACKAGES = ("python3.11", "python3-venv", "python-is-python3", "ca-certificates")
# What a base needs no more once built: package lists and caches, docs, man pages, locales.
LOCAL_BASE_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/debconf/templates.dat-old",
    "var/log",
)
# Tools for `lock` and `sbom`, in a cached virtual environment of their own.
TOOLS = ("uv==0.13.8", "cyclonedx-bom==7.5.0")
COMPILE_FLAGS = (
    "--generate-hashes",
    "--python-version",
    "3.11",
    "--python-platform",
    "x86_64-unknown-linux-gnu",
    "--no-header",
    "--no-annotate",
)
# Modules an operator image must not contain (the operator stays small; pyproject's
# import-linter contract "the operator stays small" is the code side of this).
OPERATOR_FORBIDDEN = ("torch", "pandas", "numpy", "sdv")


class ImagesError(Exception):
    """An expected failure: the message says what is wrong and what to do."""


# --------------------------------------------------------------------------- pure part


@dataclass(frozen=True)
class ImageSpec:
    """One image: where it is built from and what the chart calls it."""

    name: str  # operator | core | argn
    dockerfile: str
    target: str
    repository: str
    tag: str
    values_path: tuple[str, ...]  # where values.yaml keeps its repository/tag/digest
    help_command: tuple[str, ...]  # the entry point's --help, run as uid 10001

    @property
    def reference(self) -> str:
        """``repository:tag``, as the chart renders it without a digest."""
        return f"{self.repository}:{self.tag}"


def image_specs(values: Mapping[str, Any], app_version: str) -> list[ImageSpec]:
    """The images the chart names, in build order (the small operator first)."""
    images = values["images"]
    operator = images["operator"]
    specs = [
        ImageSpec(
            name="operator",
            dockerfile="Dockerfile.operator",
            target="operator",
            repository=operator["repository"],
            tag=operator.get("tag") or app_version,
            values_path=("operator",),
            help_command=("python", "-m", "tabular_operator", "--help"),
        )
    ]
    for engine in ("core", "argn"):
        runner = images["runner"][engine]
        specs.append(
            ImageSpec(
                name=engine,
                dockerfile="Dockerfile.runner",
                target=engine,
                repository=runner["repository"],
                tag=runner.get("tag") or f"{app_version}-{engine}",
                values_path=("runner", engine),
                help_command=("tabular-runner", "stage", "--help"),
            )
        )
    return specs


def chart_specs(chart: Path = CHART) -> list[ImageSpec]:
    """``image_specs`` of the chart in this checkout."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    app_version = str(yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"])
    return image_specs(values, app_version)


def select(specs: Sequence[ImageSpec], names: Sequence[str]) -> list[ImageSpec]:
    """The specs named (all when none), or an error naming the known ones."""
    if not names:
        return list(specs)
    known = {s.name: s for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ImagesError(f"unknown image {unknown[0]!r}: known are {', '.join(known)}")
    return [known[n] for n in names]


def oci_labels(
    spec: ImageSpec, *, version: str, revision: str, source: str, base: str
) -> dict[str, str]:
    """The OCI annotations an image carries (image-spec annotations.md)."""
    what = "operator" if spec.name == "operator" else f"runner, engine {spec.name}"
    return {
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.title": spec.repository.rsplit("/", 1)[-1],
        "org.opencontainers.image.description": f"aumos-tabular-engine {what}",
        "org.opencontainers.image.base.name": base,
    }


def build_command(
    builder: str,
    spec: ImageSpec,
    *,
    base: str,
    labels: Mapping[str, str],
    no_cache: bool = False,
    pip_cert: str | None = None,
) -> list[str]:
    """The ``buildah bud`` (or ``docker build``) command line for one image."""
    cmd = [builder, "bud", "--isolation", "chroot", "--layers", "--pull=never"]
    if builder == "docker":
        cmd = ["docker", "build"]
    cmd += ["-f", spec.dockerfile, "--target", spec.target, "-t", spec.reference]
    cmd += ["--build-arg", f"PYTHON_IMAGE={base}"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    if pip_cert and builder != "docker":
        # Bind-mounted for RUN steps only: it never lands in a layer.
        cmd += ["--volume", f"{pip_cert}:/run/aumos-pip-ca.crt:ro"]
        cmd += ["--build-arg", "PIP_CERT=/run/aumos-pip-ca.crt"]
    cmd.append(".")
    return cmd


def digests_values(specs: Sequence[ImageSpec], digests: Mapping[str, str]) -> dict[str, Any]:
    """A values file that pins the chart's images by digest (``helm -f``)."""
    images: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in digests:
            continue
        node = images
        for key in spec.values_path[:-1]:
            node = node.setdefault(key, {})
        node[spec.values_path[-1]] = {"repository": spec.repository, "digest": digests[spec.name]}
    return {"images": images}


def set_flags(specs: Sequence[ImageSpec], digests: Mapping[str, str]) -> list[str]:
    """The same as ``digests_values``, as ``--set`` flags."""
    return [
        f"--set images.{'.'.join(s.values_path)}.digest={digests[s.name]}"
        for s in specs
        if s.name in digests
    ]


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements/constraints file, by normalised name."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def unhashed(text: str) -> list[str]:
    """Requirements in a hash-pinned file that carry no ``--hash`` (pip refuses those)."""
    missing: list[str] = []
    current: str | None = None
    hashed = False
    for raw in [*text.splitlines(), ""]:
        line = raw.strip()
        match = _PIN.match(line)
        if match or not line:
            if current is not None and not hashed:
                missing.append(current)
            current, hashed = (normalize(match.group(1)), False) if match else (None, False)
        if "--hash=sha256:" in line:
            hashed = True
    return missing


def human(size: int) -> str:
    """Bytes as MB with one decimal (10^6, as image sizes are usually given)."""
    return f"{size / 1e6:.1f} MB"


def largest(entries: Mapping[str, int], count: int) -> list[tuple[str, int]]:
    """The ``count`` largest entries, largest first, ties by name."""
    return sorted(entries.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


def apt_mirror(sources: str) -> str | None:
    """The Debian mirror of an apt sources file (deb822 ``URIs:`` or one-line ``deb``)."""
    for line in sources.splitlines():
        line = line.strip()
        if line.startswith("URIs:"):
            for uri in line.split()[1:]:
                if "security" not in uri:
                    return uri
        if line.startswith("deb ") and "security" not in line:
            parts = [p for p in line.split()[1:] if not p.startswith("[")]
            if parts:
                return parts[0]
    return None


# --------------------------------------------------------------------------- the shell


def say(message: str) -> None:
    """Progress on stderr (stdout carries figures)."""
    print(f"[images] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure is an ImagesError naming it."""
    try:
        return subprocess.run(list(cmd), check=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise ImagesError(f"{cmd[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-5:] if isinstance(exc.stderr, str) else []
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        what = " ".join(cmd[:4])
        raise ImagesError(f"{what} ... failed (exit {exc.returncode}){detail}") from exc


def output(cmd: Sequence[str]) -> str:
    """stdout of a command that must succeed."""
    return run(cmd, capture_output=True).stdout


def docker_daemon() -> bool:
    """True where ``docker`` answers (a daemon runs): then docker builds."""
    if os.environ.get("AUMOS_IMAGE_BUILDER") == "buildah" or shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only), as the test platform installs PostgreSQL."""
    if os.geteuid() != 0:
        raise ImagesError(
            f"{packages[0]} is missing: apt-get install -y {' '.join(packages)} (needs root)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing {' '.join(packages)} with apt-get")
    run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def builder() -> str:
    """``docker`` where a daemon answers, else ``buildah`` (installed when root)."""
    if docker_daemon():
        return "docker"
    if shutil.which("buildah") is None:
        apt_install("buildah")
    if os.geteuid() != 0:
        # Rootless buildah needs subuid ranges and `buildah unshare` for mounts; the rest of
        # this script (mounting images for sizes and SBOMs) assumes root.
        raise ImagesError("building images with buildah needs root here (sudo make images)")
    return "buildah"


def image_exists(tool: str, ref: str) -> bool:
    """True if the local storage holds ``ref``."""
    probe = subprocess.run(
        [tool, "inspect", "--type", "image", ref] if tool == "buildah" else [tool, "inspect", ref],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def image_id(tool: str, ref: str) -> str | None:
    """The local image id ``ref`` names, if any."""
    probe = subprocess.run(
        [tool, "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref]
        if tool == "buildah"
        else [tool, "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() or None if probe.returncode == 0 else None


def registry_answers(tool: str) -> bool:
    """Try to pull the pinned upstream base (a minute at most)."""
    if image_exists(tool, UPSTREAM_BASE):
        return True
    say(f"pulling {UPSTREAM_BASE} ...")
    try:
        probe = subprocess.run(
            [tool, "pull", "-q", UPSTREAM_BASE], capture_output=True, check=False, timeout=90
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def pip_cert() -> str | None:
    """The CA bundle the host's pip trusts, when one is configured (PIP_CERT or pip.conf)."""
    configured = os.environ.get("PIP_CERT")
    if not configured:
        for conf in (Path("/etc/pip.conf"), Path.home() / ".config" / "pip" / "pip.conf"):
            if conf.is_file():
                match = re.search(r"^\s*cert\s*=\s*(\S+)", conf.read_text(), re.M)
                if match:
                    configured = match.group(1)
    return configured if configured and Path(configured).is_file() else None


def local_base(tool: str, *, rebuild: bool = False) -> str:
    """The local Debian bookworm base (debootstrap), imported into buildah's storage once."""
    if tool != "buildah":
        raise ImagesError("the local debootstrap base is for buildah builds; set PYTHON_IMAGE")
    if image_exists(tool, LOCAL_BASE) and not rebuild:
        return LOCAL_BASE
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    mirror = None
    for sources in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if sources.is_file() and mirror is None:
            mirror = apt_mirror(sources.read_text())
    work = CACHE / "images"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        say(f"making the local base with debootstrap (bookworm, minbase; about a minute) in {root}")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(LOCAL_BASE_PACKAGES)}"]
        cmd += ["bookworm", str(root)] + ([mirror] if mirror else [])
        run(cmd, capture_output=True)
        for rel in LOCAL_BASE_TRIM:
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            elif target.exists():
                target.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."])
        ctr = output([tool, "from", "scratch"]).strip()
        try:
            run([tool, "add", ctr, str(tarball), "/"], capture_output=True)
            run(
                [
                    tool,
                    "config",
                    "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env",
                    "LANG=C.UTF-8",
                    "--cmd",
                    "python3",
                    "--label",
                    "org.opencontainers.image.description=Debian bookworm minbase + python3.11",
                    ctr,
                ]
            )
            run([tool, "commit", "-q", "--rm", ctr, LOCAL_BASE], capture_output=True)
        except ImagesError:
            subprocess.run([tool, "rm", ctr], capture_output=True, check=False)
            raise
    say(f"local base {LOCAL_BASE} ready")
    return LOCAL_BASE


def choose_base(tool: str) -> str:
    """PYTHON_IMAGE if set; else upstream when a registry answers (auto), else local."""
    explicit = os.environ.get("PYTHON_IMAGE")
    if explicit:
        return explicit
    mode = os.environ.get("AUMOS_IMAGE_BASE", "auto")
    if mode not in ("auto", "upstream", "local"):
        raise ImagesError(f"AUMOS_IMAGE_BASE={mode!r}: use auto, upstream or local")
    if mode == "local":
        return local_base(tool)
    if tool == "docker" or registry_answers(tool):
        return UPSTREAM_BASE
    if mode == "upstream":
        raise ImagesError(f"{UPSTREAM_BASE} cannot be pulled; AUMOS_IMAGE_BASE=local builds one")
    say("no registry answers: using the local Debian base")
    return local_base(tool)


def git(*args: str) -> str:
    """A git query in the checkout (empty when git cannot answer)."""
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def revision() -> str:
    """The commit built, marked ``-dirty`` when the sources that go into images changed."""
    rev = git("rev-parse", "HEAD") or "unknown"
    paths = ("Dockerfile.operator", "Dockerfile.runner", "pyproject.toml", "constraints")
    dirty = git("status", "--porcelain", "--", *paths, "runner", "operator")
    return f"{rev}-dirty" if dirty else rev


def source_url() -> str:
    """The repository the images come from: AUMOS_IMAGE_SOURCE, git's origin, or the path."""
    return (
        os.environ.get("AUMOS_IMAGE_SOURCE")
        or git("remote", "get-url", "origin")
        or (f"file://{REPO}")
    )


def build(tool: str, spec: ImageSpec, base: str, *, no_cache: bool = False) -> float:
    """Build one image and export it; returns the build's seconds."""
    labels = oci_labels(
        spec, version=spec.tag.split("-")[0], revision=revision(), source=source_url(), base=base
    )
    cmd = build_command(
        tool, spec, base=base, labels=labels, no_cache=no_cache, pip_cert=pip_cert()
    )
    OUT.mkdir(exist_ok=True)
    log = OUT / f"{spec.name}.build.log"
    say(f"building {spec.reference} ({spec.dockerfile} --target {spec.target}; log: {log})")
    previous = image_id(tool, spec.reference)
    started = time.monotonic()
    with log.open("w") as sink:
        proc = subprocess.run(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n  ".join(log.read_text().splitlines()[-15:])
        raise ImagesError(f"building {spec.reference} failed (exit {proc.returncode}):\n  {tail}")
    say(f"built {spec.reference} in {seconds:.0f} s")
    if previous and previous != image_id(tool, spec.reference):
        # The image this tag named before (several GB for a runner) is dropped when nothing
        # else uses it; the layer cache (the build stages) stays.
        subprocess.run([tool, "rmi", previous], capture_output=True, check=False)
    export(tool, spec)
    return seconds


def export(tool: str, spec: ImageSpec) -> str:
    """Write ``.images/<name>.oci.tar`` and its manifest digest; returns the digest."""
    OUT.mkdir(exist_ok=True)
    archive = OUT / f"{spec.name}.oci.tar"
    digest_file = OUT / f"{spec.name}.digest"
    archive.unlink(missing_ok=True)
    started = time.monotonic()
    if tool == "docker":
        # `docker save` knows no manifest digest (a registry assigns it on push): no .digest.
        run(["docker", "save", "-o", str(archive), spec.reference])
        digest_file.unlink(missing_ok=True)
        digest = "no digest before `docker push`"
    else:
        run(
            [
                tool,
                "push",
                "-q",
                "--digestfile",
                str(digest_file),
                spec.reference,
                f"oci-archive:{archive}:{spec.reference}",
            ],
            capture_output=True,
        )
        digest = digest_file.read_text().strip()
    size = human(archive.stat().st_size)
    seconds = time.monotonic() - started
    say(f"exported {archive.relative_to(REPO)} ({size}) in {seconds:.0f} s, {digest}")
    return digest


@contextmanager
def container(ref: str) -> Iterator[str]:
    """A throwaway buildah working container of ``ref`` (removed on exit)."""
    ctr = output(["buildah", "from", "--pull=never", "-q", ref]).strip()
    try:
        yield ctr
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


@contextmanager
def mounted(ref: str) -> Iterator[Path]:
    """The root filesystem of a throwaway container of ``ref``."""
    with container(ref) as ctr:
        try:
            yield Path(output(["buildah", "mount", ctr]).strip())
        finally:
            subprocess.run(["buildah", "umount", ctr], capture_output=True, check=False)


def run_command(ctr: str, command: Sequence[str], *, user: int = UID) -> list[str]:
    """``buildah run`` of ``command`` in ``ctr`` as ``user`` (the image's env and workdir)."""
    return [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--user",
        f"{user}:{user}",
        ctr,
        "--",
        *command,
    ]


def du(path: Path) -> int:
    """Bytes under ``path`` (apparent sizes of regular files, hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def image_size(ref: str) -> int:
    """Bytes of the image's layers, uncompressed (the sum ``buildah images`` rounds)."""
    manifest = json.loads(inspect_image(ref)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def inspect_image(ref: str) -> dict[str, Any]:
    """``buildah inspect`` of an image."""
    info: dict[str, Any] = json.loads(output(["buildah", "inspect", "--type", "image", ref]))
    return info


def site_packages(root: Path) -> Path:
    """The image venv's site-packages."""
    found = sorted((root / "opt" / "venv" / "lib").glob("python3*/site-packages"))
    if not found:
        raise ImagesError(f"no /opt/venv/lib/python3*/site-packages in {root}")
    return found[0]


def describe(spec: ImageSpec, count: int = 8) -> dict[str, Any]:
    """Size, what dominates it, and what must not be there."""
    with mounted(spec.reference) as root:
        site = site_packages(root)
        packages = {p.name: du(p) for p in site.iterdir() if p.is_dir()}
        parts = {
            "/opt/venv": du(root / "opt" / "venv"),
            "/opt/app": du(root / "opt" / "app"),
            "/usr": du(root / "usr"),
            "/var": du(root / "var"),
        }
        unwanted = [
            rel
            for rel in ("root/.cache/pip", "tmp/dist", "src", "opt/build", "usr/bin/gcc")
            if (root / rel).exists()
        ]
        unwanted += [f"opt/venv/.../{p}" for p in ("pip", "tests") if (site / p).exists()]
        forbidden = [m for m in OPERATOR_FORBIDDEN if (site / m).exists()]
    return {
        "image": spec.reference,
        "size": image_size(spec.reference),
        "parts": parts,
        "top": largest(packages, count),
        "unwanted": unwanted,
        "heavy": forbidden,
    }


def print_sizes(specs: Sequence[ImageSpec]) -> None:
    """Print each built image's size and what dominates it."""
    for spec in specs:
        if not image_exists("buildah", spec.reference):
            print(f"{spec.reference}: not built")
            continue
        d = describe(spec)
        print(f"{d['image']}: {human(d['size'])}")
        print("  " + ", ".join(f"{k} {human(v)}" for k, v in d["parts"].items()))
        print("  largest in site-packages: " + ", ".join(f"{n} {human(s)}" for n, s in d["top"]))
        if spec.name == "operator":
            print(f"  torch/pandas/numpy/sdv: {', '.join(d['heavy']) or 'none'}")
        print(f"  build tools, caches, sources: {', '.join(d['unwanted']) or 'none'}")


def check(specs: Sequence[ImageSpec]) -> None:
    """Each entry point's --help as uid 10001 (what tests/images checks, quickly)."""
    failed = []
    for spec in specs:
        if not image_exists("buildah", spec.reference):
            raise ImagesError(f"{spec.reference} is not built: make images")
        with container(spec.reference) as ctr:
            proc = subprocess.run(
                run_command(ctr, spec.help_command),
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
        out = proc.stdout + proc.stderr
        ok = proc.returncode == 0
        print(f"{spec.reference}: {' '.join(spec.help_command)} -> exit {proc.returncode}")
        if not ok:
            failed.append(spec.reference)
            print(out[-2000:])
    if failed:
        raise ImagesError(f"--help failed in {', '.join(failed)}")


def tools_venv() -> Path:
    """A cached virtual environment with uv and cyclonedx-bom (pinned; created once)."""
    key = "-".join(t.replace("==", "-") for t in TOOLS)
    venv = CACHE / "tools" / f"images-{key}"
    if not (venv / ".complete").exists():
        say(f"installing {', '.join(TOOLS)} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", *TOOLS], capture_output=True)
        (venv / ".complete").touch()
    return venv


def sbom(specs: Sequence[ImageSpec]) -> None:
    """A CycloneDX JSON SBOM of each image's Python environment, beside its archive."""
    tools = tools_venv()
    OUT.mkdir(exist_ok=True)
    for spec in specs:
        if not image_exists("buildah", spec.reference):
            raise ImagesError(f"{spec.reference} is not built: make images")
        target = OUT / f"{spec.name}.cdx.json"
        with mounted(spec.reference) as root, tempfile.TemporaryDirectory() as tmp:
            # cyclonedx-py asks an interpreter for its sys.path: this one is the image's own
            # interpreter (chroot into the mounted image), its answer mapped to host paths.
            shim = Path(tmp) / "python"
            shim.write_text(
                f"#!{sys.executable}\n"
                "import json, subprocess, sys\n"
                f"root = {str(root)!r}\n"
                "out = subprocess.run(['chroot', root, '/opt/venv/bin/python', *sys.argv[1:]],\n"
                "                     check=True, capture_output=True, text=True).stdout\n"
                "print(json.dumps([root + p for p in json.loads(out) if p.startswith('/')]))\n"
            )
            shim.chmod(0o755)
            run(
                [
                    str(tools / "bin" / "cyclonedx-py"),
                    "environment",
                    "--pyproject",
                    str(REPO / "pyproject.toml"),
                    "--of",
                    "JSON",
                    "--output-reproducible",
                    "-o",
                    str(target),
                    str(shim),
                ],
                capture_output=True,
            )
        bom = json.loads(target.read_text())
        say(f"SBOM {target.relative_to(REPO)}: {len(bom.get('components', []))} components")


def digests(specs: Sequence[ImageSpec]) -> None:
    """Write .images/chart-digests.yaml (helm -f) and print the --set flags."""
    found = {
        s.name: (OUT / f"{s.name}.digest").read_text().strip()
        for s in specs
        if (OUT / f"{s.name}.digest").is_file()
    }
    if not found:
        raise ImagesError("no .images/*.digest: make images first")
    values = OUT / "chart-digests.yaml"
    header = "# Generated by `make images-digests` from the images built here; helm -f this file.\n"
    values.write_text(header + yaml.safe_dump(digests_values(specs, found), sort_keys=False))
    say(f"wrote {values.relative_to(REPO)}")
    print("\n".join(set_flags(specs, found)))


CORE = ("-c", "constraints/core.txt")
LOCKS = {
    # file: (inputs, uv pip compile arguments)
    "operator-hashes.txt": ("pyproject.toml", ["--extra", "operator", *CORE]),
    "core-hashes.txt": ("pyproject.toml", ["--extra", "core", *CORE]),
    "argn-hashes.txt": ("constraints/argn.txt", ["--no-deps"]),
    "build-hashes.txt": ("constraints/build.in", ["-c", "constraints/argn.txt"]),
}


def lock() -> None:
    """Regenerate constraints/*-hashes.txt from the pinned constraints (uv pip compile)."""
    uv = str(tools_venv() / "bin" / "uv")
    for name, (source, extra) in LOCKS.items():
        target = REPO / "constraints" / name
        header = (
            f"# Generated by `python scripts/images.py lock` from {source}"
            f" ({' '.join(extra)}): do not edit.\n"
            "# Hash-pinned for the image builds (pip install --require-hashes --no-deps -r).\n"
        )
        body = run(
            [uv, "pip", "compile", "-q", source, *extra, *COMPILE_FLAGS],
            cwd=REPO,
            capture_output=True,
        ).stdout
        target.write_text(header + body)
        say(f"wrote {target.relative_to(REPO)} ({len(pins(body))} pins)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(prog="scripts/images.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build, export, SBOM, sizes, entry points' --help")
    b.add_argument("names", nargs="*", help="operator, core, argn (default: all)")
    b.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    b.add_argument("--no-sbom", action="store_true")
    base = sub.add_parser("base", help="make (or find) the base image; prints its reference")
    base.add_argument("--rebuild", action="store_true", help="debootstrap the local base again")
    for name in ("sizes", "check", "sbom", "digests"):
        p = sub.add_parser(name)
        p.add_argument("names", nargs="*")
    sub.add_parser("lock", help="regenerate constraints/*-hashes.txt")
    args = parser.parse_args(argv)
    try:
        specs = chart_specs()
        if args.command == "lock":
            lock()
            return 0
        if args.command == "digests":
            digests(select(specs, args.names))
            return 0
        tool = builder()
        if args.command == "base":
            print(local_base(tool, rebuild=True) if args.rebuild else choose_base(tool))
        elif args.command == "build":
            chosen = select(specs, args.names)
            base_ref = choose_base(tool)
            say(f"base: {base_ref}")
            times = {s.name: build(tool, s, base_ref, no_cache=args.no_cache) for s in chosen}
            if tool == "buildah":
                if not args.no_sbom:
                    sbom(chosen)
                print_sizes(chosen)
                check(chosen)
            for name, seconds in times.items():
                print(f"{name}: built in {seconds:.0f} s")
        elif tool != "buildah":
            raise ImagesError(f"`{args.command}` reads buildah's storage; docker builds lack it")
        elif args.command == "sizes":
            print_sizes(select(specs, args.names))
        elif args.command == "check":
            check(select(specs, args.names))
        elif args.command == "sbom":
            sbom(select(specs, args.names))
    except ImagesError as exc:
        print(f"scripts/images.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
