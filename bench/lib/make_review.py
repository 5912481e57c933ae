#!/usr/bin/env python3
"""Writes an AdmissionReview (admission.k8s.io/v1) for a pod with N containers.

usage: make_review.py CONTAINERS NAMESPACE SERVICE_ACCOUNT > review.json
Each container looks like a typical workload container: an image, a command, a few env
vars, a volume mount and resource requests, so the webhook parses realistic input.
"""
import json
import sys

n, namespace, service_account = int(sys.argv[1]), sys.argv[2], sys.argv[3]
containers = []
for i in range(n):
    containers.append({
        "name": f"app-{i}",
        "image": "public.ecr.aws/docker/library/nginx:1.27",
        "command": ["nginx", "-g", "daemon off;"],
        "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "INDEX", "value": str(i)}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
    })
pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "bench-", "namespace": namespace,
                 "labels": {"app": "bench"}, "annotations": {"team": "platform"}},
    "spec": {"serviceAccountName": service_account, "containers": containers,
             "volumes": [{"name": "config", "configMap": {"name": "app-config"}}]},
}
review = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    },
}
json.dump(review, sys.stdout, separators=(",", ":"))
