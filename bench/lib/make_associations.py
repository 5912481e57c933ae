#!/usr/bin/env python3
"""Writes an associations file with N associations (plus bench/bench-sa).

usage: make_associations.py N > associations.yaml
"""
import sys

n = int(sys.argv[1])
out = ["clusterName: bench", "associations:",
       "  - namespace: bench", "    serviceAccount: bench-sa",
       "    roleArn: arn:aws:iam::111122223333:role/bench-role"]
for i in range(n - 1):
    out.append(f"  - namespace: ns-{i // 100}")
    out.append(f"    serviceAccount: sa-{i % 100}")
    out.append(f"    roleArn: arn:aws:iam::111122223333:role/role-{i}")
sys.stdout.write("\n".join(out) + "\n")
