#!/usr/bin/env python3
"""List S3 buckets with whatever credentials the default chain finds.

Inside an injected pod that is the container credential provider: boto3 reads
AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, which the
webhook set, and asks the node agent for the associated role's credentials.
Run it in the pod:  kubectl exec -n demo-ns demo-app -- python3 /path/list_buckets.py
"""
import boto3

for bucket in boto3.Session().client("s3").list_buckets().get("Buckets", []):
    print(bucket["Name"])
