#!/usr/bin/env python3
"""End to end with a real STS: agent (--broker sts, --sts-endpoint at radosgw) ->
AssumeRole at radosgw -> the credentials the agent handed out list the bucket with the
boto3 script from the walkthrough and with `aws s3 ls`; after the association is removed
from the file, the same clients fail.

Exits 77 (ctest: skipped) when the Ceph binaries are missing (scripts/setup installs
ceph-mon, ceph-osd and radosgw).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import agent_test
from agent_test import Process, Keys, wait_until, DEADLINE  # noqa: F401

RADOSGW = agent_test.REPO_ROOT / "test" / "peers" / "radosgw"
LIST_BUCKETS = agent_test.REPO_ROOT / "examples" / "walkthrough" / "list_buckets.py"


class RadosgwEndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = pathlib.Path(tempfile.mkdtemp(prefix="agent-rgw-"))
        cls.rgw_dir = cls.tmp / "rgw"
        result = subprocess.run([str(RADOSGW / "start"), str(cls.rgw_dir)], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"radosgw did not start:\n{result.stderr[-3000:]}")
        cls.rgw = json.loads((cls.rgw_dir / "env.json").read_text())
        cls.keys = Keys(cls.tmp)
        cls.associations = cls.tmp / "associations.yaml"
        cls.associations.write_text("clusterName: rgw\nassociations:\n  - namespace: demo-ns\n    serviceAccount: demo-sa\n"
                                    f"    roleArn: {cls.rgw['ROLE_ARN']}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": cls.rgw["AGENT_ACCESS_KEY_ID"],
                    "AWS_SECRET_ACCESS_KEY": cls.rgw["AGENT_SECRET_ACCESS_KEY"]})
        cls.agent = Process([agent_test.AGENT_BIN, "--bind-hosts", "127.0.0.1", "--port", "0", "--probe-host", "127.0.0.1",
                             "--probe-port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
                             "--jwks-file", str(cls.keys.jwks), "--issuer", agent_test.ISSUER,
                             "--associations", str(cls.associations), "--broker", "sts",
                             "--sts-endpoint", cls.rgw["RGW_ENDPOINT"], "--region", "us-east-1",
                             "--reload-interval-ms", "200", "--rate-limit", "0"], env=env)
        port = cls.agent.wait_for(lambda l: l.get("msg") == "listening" and l.get("listener") == "credentials",
                                  "the agent to listen")["port"]
        cls.uri = f"http://127.0.0.1:{port}/v1/credentials"

    @classmethod
    def tearDownClass(cls):
        code = cls.agent.stop()
        subprocess.run([str(RADOSGW / "stop"), str(cls.rgw_dir)], capture_output=True, timeout=60)
        logs = "\n".join(cls.agent.output())
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert cls.rgw["AGENT_SECRET_ACCESS_KEY"] not in logs, "the agent logged its secret key"
        assert code == 0

    def pod_env(self):
        token_file = self.tmp / "token"
        token_file.write_text(self.keys.mint())
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
                    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
                    "AWS_ENDPOINT_URL_S3": self.rgw["RGW_ENDPOINT"]})
        return env

    def run_clients(self):
        env = self.pod_env()
        boto = subprocess.run(["python3", str(LIST_BUCKETS)], env=env, capture_output=True, text=True, timeout=120)
        cli = subprocess.run(["aws", "s3", "ls", "--endpoint-url", self.rgw["RGW_ENDPOINT"]], env=env,
                             capture_output=True, text=True, timeout=120)
        return boto, cli

    def test_1_clients_list_the_bucket_with_the_agents_credentials(self):
        boto, cli = self.run_clients()
        self.assertEqual(boto.returncode, 0, boto.stderr)
        self.assertIn(self.rgw["BUCKET"], boto.stdout.split())
        self.assertEqual(cli.returncode, 0, cli.stderr)
        self.assertIn(self.rgw["BUCKET"], cli.stdout)

    def test_2_removing_the_association_stops_them(self):
        tmp = self.associations.with_suffix(".tmp")
        tmp.write_text("clusterName: rgw\nassociations: []\n")
        os.replace(tmp, self.associations)
        self.agent.wait_for(lambda l: l.get("msg") == "associations reloaded", "the agent to reload")
        boto, cli = self.run_clients()
        self.assertNotEqual(boto.returncode, 0)
        self.assertNotIn(self.rgw["BUCKET"], boto.stdout)
        self.assertNotEqual(cli.returncode, 0)


if __name__ == "__main__":
    if not all(shutil.which(b) for b in ("ceph-mon", "ceph-osd", "radosgw")):
        print("SKIPPED: ceph-mon, ceph-osd or radosgw is not installed (scripts/setup installs them)", file=sys.stderr)
        sys.exit(77)
    unittest.main()
