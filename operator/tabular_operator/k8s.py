"""The one module that talks to the Kubernetes API (besides Kopf itself).

Plain JSON in and out (camelCase dicts, as the manifests are built), synchronous calls of
the official client: the controller runs them in worker threads. Every write is idempotent
by construction: ``create`` treats 409 AlreadyExists as success, deletes treat 404 as done,
status writes are merge patches of fields the operator owns.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tabular_operator.manifests import UID_LABEL
from tabular_runner.spec import API_GROUP, API_VERSION_NAME

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0 without a response)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _wrap(exc: ApiException, what: str) -> KubeError:
    reason = exc.reason or ""
    try:
        reason = json.loads(exc.body or "{}").get("message", reason)
    except (TypeError, ValueError):
        pass
    return KubeError(f"{what}: HTTP {exc.status} {reason}", int(exc.status or 0))


CONNECTIONS = 32
"""HTTP connections to the apiserver: as many as the controller's worker threads."""


def load_api_client() -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (``$KUBECONFIG``)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    # The default pool (5 per CPU) makes a burst of new jobs queue for a connection.
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)


class Kube:
    """What the operator reads and writes, as plain dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    # -- the operator's kinds -----------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our resources, or None if absent."""
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION_NAME, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc, f"get {plural}/{name}") from exc
        return obj

    def list_all(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """All resources of ``plural`` in ``namespace``."""
        try:
            out = self.custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION_NAME, namespace, plural
            )
        except ApiException as exc:
            raise _wrap(exc, f"list {plural}") from exc
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    def patch_status(
        self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch ``status`` (None if the object is gone)."""
        try:
            obj: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION_NAME, namespace, plural, name, {"status": dict(patch)}
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _wrap(exc, f"patch {plural}/{name}/status") from exc
        return obj

    # -- stage Jobs and their pods --------------------------------------------------------

    def stage_jobs(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The stage Jobs of the SynthesisJob with ``uid``."""
        try:
            resp = self.batch.list_namespaced_job(
                namespace, label_selector=f"{UID_LABEL}={uid}", _preload_content=False
            )
        except ApiException as exc:
            raise _wrap(exc, "list stage Jobs") from exc
        items: list[dict[str, Any]] = self._json(resp).get("items", [])
        return items

    def stage_pods(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The pods of those Jobs (they carry the template's labels)."""
        try:
            resp = self.core.list_namespaced_pod(
                namespace, label_selector=f"{UID_LABEL}={uid}", _preload_content=False
            )
        except ApiException as exc:
            raise _wrap(exc, "list stage pods") from exc
        items: list[dict[str, Any]] = self._json(resp).get("items", [])
        return items

    def create_job(self, manifest: Mapping[str, Any]) -> bool:
        """Create a Job if absent; True if this call created it."""
        namespace = manifest["metadata"]["namespace"]
        try:
            self.batch.create_namespaced_job(namespace, dict(manifest), _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise _wrap(exc, f"create Job {manifest['metadata']['name']}") from exc
        return True

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        """Set a stage Job's ``spec.suspend``."""
        try:
            self.batch.patch_namespaced_job(
                name, namespace, {"spec": {"suspend": suspend}}, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _wrap(exc, f"suspend Job {name}") from exc

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete one Job (its pods follow); absent is fine."""
        try:
            self.batch.delete_namespaced_job(
                name, namespace, propagation_policy="Background", _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _wrap(exc, f"delete Job {name}") from exc

    def delete_stage_jobs(self, namespace: str, uid: str) -> int:
        """Delete every stage Job of a SynthesisJob (pods follow by garbage collection)."""
        count = 0
        for job in self.stage_jobs(namespace, uid):
            name = job["metadata"]["name"]
            try:
                self.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _preload_content=False
                )
                count += 1
            except ApiException as exc:
                if exc.status != 404:
                    raise _wrap(exc, f"delete Job {name}") from exc
        return count

    # -- events and secrets ---------------------------------------------------------------

    def post_event(
        self, body: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """A core/v1 Event about ``body`` (one of our resources)."""
        meta = body["metadata"]
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "aumos-tabular-operator"},
            "reportingComponent": "aumos-tabular-operator",
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], event, _preload_content=False)
        except ApiException as exc:
            raise _wrap(exc, "post Event") from exc

    def ensure_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,
    ) -> None:
        """Create or replace a Secret (the operator never reads Secrets).

        ``owner`` (a custom object's body) becomes the Secret's controller owner reference, so
        the Secret is garbage-collected with it.
        """
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "aumos-tabular-operator", **(labels or {})},
        }
        if annotations:
            metadata["annotations"] = dict(annotations)
        if owner is not None:
            meta = owner["metadata"]
            metadata["ownerReferences"] = [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ]
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque"}
        body["stringData"] = dict(data)
        try:
            self.core.create_namespaced_secret(namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise _wrap(exc, f"create Secret {name}") from exc
            try:
                self.core.replace_namespaced_secret(name, namespace, body, _preload_content=False)
            except ApiException as exc2:
                raise _wrap(exc2, f"update Secret {name}") from exc2
