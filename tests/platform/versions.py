"""Pinned versions of everything the test platform obtains.

One place so that docs/testing.md, the cache layout and the builders agree.
"""

from __future__ import annotations

#: k8s.io/kubernetes release; 1.34 needs Go >= 1.24 (its go.mod says ``go 1.24.0``).
KUBERNETES = "v1.34.4"
#: etcd built with ``go install``; 3.6 is the line the 1.34 apiserver is tested against.
ETCD = "v3.6.16"
HELM = "v3.19.0"
KUBECONFORM = "v0.7.0"
#: sigs.k8s.io/cli-utils, whose pkg/kstatus/status is Flux's (and kpt's) health checker. v0.37.2
#: asks for k8s.io/apimachinery >= v0.30.1; the generated go.mod raises k8s.io/api and
#: apimachinery to the cluster's staging version (v0.34.4), so the Go build cache is shared.
KSTATUS = "v0.37.2"
#: org.apache.kafka:kafka_2.13 from the Maven repository (KRaft single node).
KAFKA = "4.1.1"

#: Staging modules of k8s.io/kubernetes: its own go.mod replaces them with ./staging paths,
#: which do not apply when it is a dependency, so the generated go.mod pins each to v0.x.y.
K8S_STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
