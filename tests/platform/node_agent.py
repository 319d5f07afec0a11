"""A node agent for the local control plane: the kubelet of two nodes, containers as processes.

It registers and heartbeats two Nodes sharing this machine (``aumos-cpu-node``, and
``aumos-gpu-node`` with ``nvidia.com/gpu: 1``, a GPU label and a NoSchedule taint; sizes in
:func:`tests.platform.agent_logic.plan_nodes`). It does not schedule: the real kube-scheduler
binds pods. For each pod bound to one of its nodes it runs each container's command as a local
process group with the pod's environment, reports pod and container status through the status
subresource (exit codes, termination messages), and finalises deletion after killing the
processes, as the kubelet would.

The decisions are pure functions in :mod:`tests.platform.agent_logic`; this module only does
I/O. It polls the apiserver (a few requests a second on loopback) rather than watching: a
poll has no resync or reconnect logic to get wrong, and the latency is a fraction of a second.

Run: ``python -m tests.platform.node_agent --kubeconfig K --workdir D [--pid-dir P]``.
Each container's process-group id is recorded in ``--pid-dir`` while it runs so that
``down.sh`` kills it even if this agent died without cleaning up.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config

from tests.platform import agent_logic as logic

log = logging.getLogger("node-agent")

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_FILE = Path(__file__).with_name("images.yaml")
HEARTBEAT_S = 10.0
MAX_GRACE_S = 30.0


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


class Kube:
    """Raw JSON requests with the connection settings of a kubeconfig.

    urllib3 directly rather than the generated client: the agent needs subresources and
    patch types the typed API makes awkward, and this stays the same across client versions.
    """

    def __init__(self, kubeconfig: str) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.server: str = cfg.host
        self.ca_file: str | None = cfg.ssl_ca_cert
        self._auth = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix(
            "BearerToken"
        )
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
        )

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self._auth:
            headers["Authorization"] = self._auth
        resp = self.pool.request(
            method,
            self.server + path,
            headers=headers,
            body=None if body is None else json.dumps(body).encode(),
            timeout=urllib3.Timeout(connect=5, read=30),
            retries=False,
        )
        data = resp.data.decode(errors="replace")
        if resp.status >= 300:
            raise ApiError(resp.status, data)
        return json.loads(data) if data else {}

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")


def pod_path(pod: Mapping[str, Any], sub: str = "") -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}{sub}"


@dataclass
class AgentConfig:
    nodes: list[logic.NodePlan]
    workdir: Path = Path("/tmp/aumos-node-agent")
    pid_dir: Path | None = None
    interval: float = 0.3
    images: list[logic.ImageEntry] = field(default_factory=list)
    local_images: LocalImages | None = None
    """Image mode: containers run inside images from buildah's local storage."""

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]


class LocalImages:
    """Built images in buildah's local storage, and running a container inside one.

    Each container gets a working container of its own (``buildah from``: a copy-on-write
    overlay of the image) and runs with ``buildah run --isolation chroot --network host``: the
    image's root file system and environment, the pod's command, args, env, user and working
    directory. The pod's directory (termination log, service-account kubeconfig, HOME) and the
    cluster CA are bind-mounted at the same paths, so the paths the agent hands out hold inside.
    """

    def __init__(self, buildah: str) -> None:
        self.buildah = buildah

    def config(self, image: str) -> logic.ImageConfig | None:
        """The image's config, or None when it is not in local storage."""
        out = subprocess.run(
            [self.buildah, "inspect", "--type", "image", image],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            return None
        doc = json.loads(out.stdout)
        return logic.image_config(
            str(doc.get("FromImageID") or ""), doc["OCIv1"].get("config") or {}
        )

    def create(self, name: str, image: logic.ImageConfig) -> None:
        """A fresh working container ``name`` of ``image`` (an earlier one is removed)."""
        self.remove(name)
        subprocess.run(
            [self.buildah, "from", "--pull-never", "--name", name, image.image_id],
            capture_output=True,
            text=True,
            check=True,
        )

    def remove(self, name: str) -> None:
        subprocess.run([self.buildah, "rm", name], capture_output=True, check=False)

    def run_argv(
        self,
        name: str,
        argv: Sequence[str],
        *,
        user: str,
        workdir: str,
        env: Mapping[str, str],
        mounts: Sequence[tuple[str, str]],
    ) -> list[str]:
        """The ``buildah run`` command line that runs ``argv`` in container ``name``."""
        cmd = [
            self.buildah,
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--user",
            user,
            "--workingdir",
            workdir,
        ]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        for source, target in mounts:
            cmd += ["--volume", f"{source}:{target}"]
        return [*cmd, "--", name, *argv]


def this_machine(workdir: Path) -> logic.Machine:
    """CPUs, memory (/proc/meminfo) and disk (of ``workdir``'s file system) of this host."""
    memory = logic.meminfo_total(Path("/proc/meminfo").read_text())
    return logic.Machine(
        cpus=os.cpu_count() or 1, memory=memory, disk=shutil.disk_usage(workdir).total
    )


class PodRunner(threading.Thread):
    """Runs one pod's containers (init containers in order, then the rest together)."""

    def __init__(self, agent: NodeAgent, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.uid: str = meta["uid"]
        self.spec: Mapping[str, Any] = pod["spec"]
        self.policy: str = self.spec.get("restartPolicy", "Always")
        self.dir = agent.cfg.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.init = [
            logic.ContainerState(c["name"], c.get("image", ""))
            for c in self.spec.get("initContainers") or []
        ]
        self.main = [
            logic.ContainerState(c["name"], c.get("image", ""))
            for c in self.spec.get("containers") or []
        ]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_requested = threading.Event()
        self.grace = MAX_GRACE_S
        self.start_time = now_iso()
        self._last_key: Any = None
        self._sa_env: dict[str, str] | None = None
        self._containers: set[str] = set()
        """Image mode: the working containers of this pod (removed when it ends)."""

    # -- lifecycle ---------------------------------------------------------------------

    def request_stop(self, grace: float) -> None:
        self.grace = min(self.grace, max(grace, 0.0), MAX_GRACE_S)
        self.stop_requested.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # the agent keeps going; the pod shows what happened
            log.exception("pod %s failed in the agent", self.name)
            for c in self.main:
                if c.state != "terminated":
                    c.state, c.reason, c.exit_code, c.message = (
                        "terminated",
                        "Error",
                        128,
                        "node agent error",
                    )
            self.report()
        finally:
            self._kill_all(0)
            images = self.agent.cfg.local_images
            if images is not None:
                for container in self._containers:
                    images.remove(container)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.report()
        for spec, state in zip(self.spec.get("initContainers") or [], self.init, strict=True):
            while True:
                proc = self._start(spec, state)
                if proc is None:
                    if self._wait_or_stop(2.0):
                        return
                    continue
                while proc.poll() is None:
                    if self.stop_requested.wait(0.1):
                        self._kill_all(self.grace)
                        return
                self._finish(spec, state, proc.returncode)
                if proc.returncode == 0:
                    break
                if not logic.should_restart(self.policy, proc.returncode):
                    self.report()
                    return
                if self._wait_or_stop(min(10.0, 2.0**state.restart_count)):
                    return
                state.restart_count += 1
        specs = list(self.spec.get("containers") or [])
        for spec, state in zip(specs, self.main, strict=True):
            self._start(spec, state)
        backoff_until: dict[str, float] = {}
        while True:
            if self.stop_requested.is_set():
                self._kill_all(self.grace)
                return
            changed = False
            for spec, state in zip(specs, self.main, strict=True):
                proc = self.procs.get(state.name)
                if proc is not None and proc.poll() is not None:
                    self._finish(spec, state, proc.returncode)
                    changed = True
                    if logic.should_restart(self.policy, proc.returncode):
                        backoff_until[state.name] = time.monotonic() + min(
                            10.0, 2.0**state.restart_count
                        )
                elif proc is None and state.state == "waiting" and self.policy != "Never":
                    self._start(spec, state)  # config/image errors are retried like the kubelet
                if state.name in backoff_until and time.monotonic() >= backoff_until[state.name]:
                    del backoff_until[state.name]
                    state.restart_count += 1
                    self._start(spec, state)
                    changed = True
            if changed:
                self.report()
            if logic.pod_phase(self.policy, self.init, self.main) in logic.TERMINAL_PHASES:
                return
            self.stop_requested.wait(0.1)

    def _wait_or_stop(self, seconds: float) -> bool:
        return self.stop_requested.wait(seconds)

    # -- containers ----------------------------------------------------------------------

    def _start(
        self, spec: Mapping[str, Any], state: logic.ContainerState
    ) -> subprocess.Popen[bytes] | None:
        if self.agent.cfg.local_images is not None:
            return self._start_in_image(spec, state, self.agent.cfg.local_images)
        agent = self.agent
        entry = logic.match_image(spec.get("image", ""), agent.cfg.images)
        if entry is None:
            return self._waiting(
                state,
                "ErrImagePull",
                f'image "{spec.get("image")}" is not mapped in {IMAGES_FILE.name} '
                "(containers are local processes)",
            )
        try:
            env = logic.resolve_env(spec, self.pod, agent.lookup, self.spec.get("nodeName", ""))
            argv = logic.container_argv(spec, entry, env)
        except logic.ContainerConfigError as e:
            return self._waiting(state, "CreateContainerConfigError", str(e))
        name = state.name
        term = self.dir / f"{name}.termination-log"
        term.write_text("")
        # The process cannot write the container path (/dev/termination-log); every mention of
        # it in argv and env points at a per-container file instead.
        tm_path = spec.get("terminationMessagePath") or "/dev/termination-log"
        argv = [a.replace(tm_path, str(term)) for a in argv]
        env = {k: v.replace(tm_path, str(term)) for k, v in env.items()}
        base = {
            "PATH": os.pathsep.join([*entry.path, os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(self.dir / "home"),
            "HOSTNAME": self.pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "AUMOS_TERMINATION_MESSAGE_PATH": str(term),
        }
        (self.dir / "home").mkdir(exist_ok=True)
        full_env = {**base, **entry.env, **self._service_account_env(), **env}
        cwd = (
            Path(spec["workingDir"])
            if spec.get("workingDir") and Path(spec["workingDir"]).is_dir()
            else self.dir
        )
        return self._spawn(state, argv, argv, full_env, cwd)

    def _waiting(
        self, state: logic.ContainerState, reason: str, message: str
    ) -> subprocess.Popen[bytes] | None:
        """The container cannot start yet (retried like the kubelet): report why; no process."""
        state.state, state.reason, state.message = "waiting", reason, message
        self.report()
        return None

    def _start_failed(
        self, state: logic.ContainerState, message: str
    ) -> subprocess.Popen[bytes] | None:
        """The container's process could not be started (exit 128, ``StartError``); no process."""
        state.state, state.reason, state.message = "terminated", "StartError", message
        state.exit_code, state.started_at, state.finished_at = 128, now_iso(), now_iso()
        self.report()
        return None

    def _spawn(
        self,
        state: logic.ContainerState,
        argv: list[str],
        shown: list[str],
        env: Mapping[str, str],
        cwd: Path,
    ) -> subprocess.Popen[bytes] | None:
        """Start ``argv`` as the container's process group (``shown`` is what the log says)."""
        name = state.name
        logfile = self.dir / f"{name}.log"
        try:
            with logfile.open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=dict(env),
                    cwd=cwd,
                    start_new_session=True,
                )
        except OSError as e:
            return self._start_failed(state, str(e))
        self.procs[name] = proc
        self.agent.record_pid(self.uid, name, proc.pid)
        state.state, state.reason, state.message, state.exit_code = "running", "", "", None
        state.started_at, state.finished_at = now_iso(), None
        log.info("started %s/%s: %s (pid %d)", self.name, name, shown, proc.pid)
        self.report()
        return proc

    def _start_in_image(
        self, spec: Mapping[str, Any], state: logic.ContainerState, images: LocalImages
    ) -> subprocess.Popen[bytes] | None:
        """Image mode: run the container inside its image (see :class:`LocalImages`)."""
        image = images.config(spec.get("image", ""))
        if image is None:
            return self._waiting(
                state,
                "ErrImagePull",
                f'image "{spec.get("image")}" is not in the local image storage (make images)',
            )
        try:
            env = logic.resolve_env(
                spec, self.pod, self.agent.lookup, self.spec.get("nodeName", "")
            )
            argv = logic.image_argv(spec, image, env)
        except logic.ContainerConfigError as e:
            return self._waiting(state, "CreateContainerConfigError", str(e))
        name = state.name
        # The pod directory is mounted at the same path inside: a non-root user writes there.
        self.dir.chmod(0o777)
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        home.chmod(0o777)
        term = self.dir / f"{name}.termination-log"
        term.write_text("")
        term.chmod(0o666)
        tm_path = spec.get("terminationMessagePath") or "/dev/termination-log"
        argv = [a.replace(tm_path, str(term)) for a in argv]
        env = {k: v.replace(tm_path, str(term)) for k, v in env.items()}
        base = {
            "HOME": str(home),
            "HOSTNAME": self.pod["metadata"]["name"],
            "AUMOS_TERMINATION_MESSAGE_PATH": str(term),
        }
        full_env = {**image.env, **base, **self._service_account_env(), **env}
        mounts = [(str(self.dir), str(self.dir))]
        if self.agent.kube.ca_file:
            mounts.append((self.agent.kube.ca_file, self.agent.kube.ca_file))
        container = f"aumos-{self.uid[:8]}-{name}"
        try:
            images.create(container, image)
        except subprocess.CalledProcessError as e:
            return self._start_failed(state, e.stderr[-500:])
        self._containers.add(container)
        state.image_id = image.image_id
        command = images.run_argv(
            container,
            argv,
            user=logic.run_user(spec, self.spec, image),
            workdir=spec.get("workingDir") or image.working_dir or "/",
            env=full_env,
            mounts=mounts,
        )
        return self._spawn(state, command, ["(in", image.image_id[:19] + ")", *argv], {}, self.dir)

    def _finish(self, spec: Mapping[str, Any], state: logic.ContainerState, code: int) -> None:
        proc = self.procs.pop(state.name, None)
        if proc is not None:
            # The main process is gone; take any children it left in its group with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.agent.forget_pid(self.uid, state.name)
        written = ""
        with contextlib.suppress(OSError):
            written = (self.dir / f"{state.name}.termination-log").read_text(errors="replace")
        tail = ""
        with contextlib.suppress(OSError):
            tail = (self.dir / f"{state.name}.log").read_text(errors="replace")[-8192:]
        exit_code = code if code >= 0 else 128 - code  # killed by signal N -> 128+N
        state.state, state.exit_code, state.finished_at = "terminated", exit_code, now_iso()
        state.reason = "Completed" if exit_code == 0 else "Error"
        state.message = logic.termination_message(
            written, tail, policy=spec.get("terminationMessagePolicy", "File"), exit_code=exit_code
        )
        log.info("container %s/%s exited %d", self.name, state.name, exit_code)

    def _kill_all(self, grace: float) -> None:
        if not self.procs:
            return
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            time.sleep(0.05)
        for name, proc in list(self.procs.items()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            self.agent.forget_pid(self.uid, name)
        self.procs.clear()

    def _service_account_env(self) -> dict[str, str]:
        """A token kubeconfig when the pod mounts a service-account token (automount)."""
        if self._sa_env is not None:
            return self._sa_env
        self._sa_env = {}
        projected = [
            s
            for v in self.spec.get("volumes") or []
            for s in ((v.get("projected") or {}).get("sources") or [])
        ]
        if not any("serviceAccountToken" in s for s in projected):
            return self._sa_env
        meta = self.pod["metadata"]
        sa = self.spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": self.uid,
                },
            },
        }
        token = self.agent.kube.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body
        )["status"]["token"]
        sa_dir = self.dir / "serviceaccount"
        sa_dir.mkdir(exist_ok=True)
        (sa_dir / "token").write_text(token)
        (sa_dir / "namespace").write_text(meta["namespace"])
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sa",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.agent.kube.server,
                        "certificate-authority": self.agent.kube.ca_file,
                    },
                }
            ],
            "users": [{"name": sa, "user": {"tokenFile": str(sa_dir / "token")}}],
            "contexts": [
                {
                    "name": "sa",
                    "context": {"cluster": "local", "user": sa, "namespace": meta["namespace"]},
                }
            ],
        }
        path = self.dir / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        self._sa_env = {"KUBECONFIG": str(path)}
        return self._sa_env

    # -- status ----------------------------------------------------------------------------

    def report(self) -> None:
        key = [
            (c.state, c.reason, c.exit_code, c.restart_count, c.message)
            for c in [*self.init, *self.main]
        ]
        if key == self._last_key:
            return
        status = logic.render_status(
            self.policy, self.init, self.main, start_time=self.start_time, now=now_iso()
        )
        try:
            self.agent.kube.merge_patch(pod_path(self.pod, "/status"), {"status": status})
            self._last_key = key
        except ApiError as e:
            if e.status != 404:
                log.warning("status of %s not written: %s", self.name, e)

    @property
    def phase(self) -> str:
        return logic.pod_phase(self.policy, self.init, self.main)


class NodeAgent:
    def __init__(self, kube: Kube, cfg: AgentConfig) -> None:
        self.kube, self.cfg = kube, cfg
        self.runners: dict[str, PodRunner] = {}
        self.deleted: set[str] = set()
        self._last_heartbeat = 0.0
        self._ready_since = now_iso()
        self._pid_lock = threading.Lock()

    # -- pid records (down.sh kills what is recorded) -------------------------------------

    def record_pid(self, uid: str, container: str, pid: int) -> None:
        if self.cfg.pid_dir is not None:
            with self._pid_lock:
                (self.cfg.pid_dir / f"pod-{uid[:8]}-{container}.pid").write_text(f"{pid}\n")

    def forget_pid(self, uid: str, container: str) -> None:
        if self.cfg.pid_dir is not None:
            with self._pid_lock:
                (self.cfg.pid_dir / f"pod-{uid[:8]}-{container}.pid").unlink(missing_ok=True)

    # -- lookups for env resolution -----------------------------------------------------

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        plural = {"secret": "secrets", "configmap": "configmaps"}[kind]
        try:
            obj = self.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        data = obj.get("data") or {}
        if kind == "secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)

    # -- nodes ---------------------------------------------------------------------------

    def node_status(self, node: logic.NodePlan) -> dict[str, Any]:
        now = now_iso()

        def cond(kind: str, status: str, reason: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._ready_since,
            }

        return {
            "capacity": dict(node.capacity),
            "allocatable": dict(node.allocatable),
            "conditions": [
                cond("Ready", "True", "KubeletReady"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": node.name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "aumos-node-agent",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "process://local",
                "osImage": "local",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }

    def register(self) -> None:
        self._ready_since = now_iso()
        for node in self.cfg.nodes:
            self._register(node)
        self._last_heartbeat = time.monotonic()

    def _register(self, node: logic.NodePlan) -> None:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **node.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels},
        }
        try:
            self.kube.request("POST", "/api/v1/nodes", body)
        except ApiError as e:
            if e.status != 409:
                raise
            self.kube.merge_patch(f"/api/v1/nodes/{node.name}", {"metadata": {"labels": labels}})
        self.kube.merge_patch(
            f"/api/v1/nodes/{node.name}/status", {"status": self.node_status(node)}
        )
        # TaintNodesByCondition adds node.kubernetes.io/not-ready at creation and the (absent)
        # node-lifecycle controller would lift it; the node is Ready, so set the taints we mean.
        self.kube.merge_patch(
            f"/api/v1/nodes/{node.name}",
            {"spec": {"taints": [dict(t) for t in node.taints] or None}},
        )
        log.info(
            "node %s registered: capacity %s, allocatable %s, taints %s",
            node.name,
            dict(node.capacity),
            dict(node.allocatable),
            list(node.taints),
        )

    def heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_S:
            for node in self.cfg.nodes:
                self.kube.merge_patch(
                    f"/api/v1/nodes/{node.name}/status", {"status": self.node_status(node)}
                )
            self._last_heartbeat = time.monotonic()

    # -- the loop ----------------------------------------------------------------------------

    def tick(self) -> None:
        self.heartbeat()
        pods = self.kube.get("/api/v1/pods")["items"]
        mine = [p for p in pods if logic.runs_here(p, self.cfg.node_names)]
        seen = set()
        for pod in mine:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            runner = self.runners.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                if runner is not None and runner.is_alive():
                    runner.request_stop(grace)
                else:
                    self.finalize_delete(pod)
            elif runner is None and not logic.is_terminal(pod):
                runner = PodRunner(self, pod)
                self.runners[uid] = runner
                runner.start()
        for uid, runner in list(self.runners.items()):
            if uid not in seen:  # deleted with grace 0 or gone otherwise
                runner.request_stop(0)
                if not runner.is_alive():
                    del self.runners[uid]
        self.deleted &= seen

    def finalize_delete(self, pod: Mapping[str, Any]) -> None:
        """The kubelet's last step: delete with grace 0 once no process of the pod is left."""
        uid = pod["metadata"]["uid"]
        if uid in self.deleted:
            return
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self.kube.request("DELETE", pod_path(pod), body)
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s failed: %s", pod["metadata"]["name"], e)
                return
        self.deleted.add(uid)
        self.runners.pop(uid, None)

    def run(self, stop: threading.Event) -> None:
        self.register()
        failures = 0
        while not stop.is_set():
            try:
                self.tick()
                failures = 0
            except Exception as e:  # apiserver hiccup: retry with backoff, log once per streak
                failures += 1
                if failures == 1:
                    log.warning("tick failed: %s", e)
                stop.wait(min(5.0, 0.5 * failures))
            stop.wait(self.cfg.interval)
        log.info("stopping: killing %d pods' processes", len(self.runners))
        for runner in self.runners.values():
            runner.request_stop(2.0)
        for runner in self.runners.values():
            runner.join(timeout=MAX_GRACE_S + 10)


def _argn_bin() -> str:
    """The bin dir of the cached argn engine environment (``scripts/venv.sh argn``).

    An argn runner image is that environment; when it was never built the path does not
    exist and such containers fail to start, as a missing image would.
    """
    sys.path.insert(0, str(REPO_ROOT / "runner"))
    try:
        from tabular_runner import engines

        return str(engines.environment(engines.ARGN).python.parent)
    except Exception:  # noqa: BLE001 - no argn lock in this checkout
        return str(REPO_ROOT / ".no-argn-environment")
    finally:
        sys.path.pop(0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--pid-dir", type=Path)
    ap.add_argument("--images", type=Path, default=IMAGES_FILE)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument(
        "--containers",
        choices=("process", "image"),
        default=os.environ.get("AUMOS_NODE_AGENT_CONTAINERS", "process"),
        help="process: containers are local processes mapped by images.yaml (default); "
        "image: each runs inside its built image (make images), e.g. for make test-images",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s"
    )
    placeholders = {
        "python_bin": str(Path(sys.executable).parent),
        "argn_bin": _argn_bin(),
        "repo": str(REPO_ROOT),
    }
    args.workdir.mkdir(parents=True, exist_ok=True)
    local_images = None
    if args.containers == "image":
        buildah = shutil.which("buildah")
        if buildah is None:
            ap.error("--containers=image needs buildah (apt-get install buildah)")
        local_images = LocalImages(buildah)
        log.info("containers run inside images from buildah's local storage")
    cfg = AgentConfig(
        nodes=logic.plan_nodes(this_machine(args.workdir)),
        workdir=args.workdir,
        pid_dir=args.pid_dir,
        interval=args.interval,
        images=logic.load_image_table(yaml.safe_load(args.images.read_text()), placeholders),
        local_images=local_images,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    NodeAgent(Kube(args.kubeconfig), cfg).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
