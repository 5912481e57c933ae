#!/usr/bin/env python3
"""Smoke test of the throwaway radosgw peer (start/stop in this folder).

Proves what the agent's end-to-end tests rely on, with boto3 as the client: the agent's
user can AssumeRole into the role, the temporary credentials work for S3 ListBuckets
and GetObject (and only for what the role policy allows), and radosgw really checks
SigV4 (a wrong secret is rejected). Exits 77 (ctest SKIP_RETURN_CODE) when the Ceph
binaries are not installed.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin")


class RadosgwPeerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import boto3  # noqa: F401  (fail early and clearly if boto3 is missing)

        cls.workdir = tempfile.mkdtemp(prefix="radosgw-smoke-")
        started = time.monotonic()
        result = subprocess.run([os.path.join(HERE, "start"), cls.workdir],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                timeout=300)
        cls.start_seconds = time.monotonic() - started
        if result.returncode != 0:
            subprocess.run([os.path.join(HERE, "stop"), cls.workdir], check=False)
            raise AssertionError(f"start failed ({result.returncode}):\n{result.stderr}")
        with open(os.path.join(cls.workdir, "env.json"), encoding="utf-8") as f:
            cls.env = json.load(f)
        print(f"radosgw ready in {cls.start_seconds:.1f}s at {cls.env['RGW_ENDPOINT']}",
              file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        subprocess.run([os.path.join(HERE, "stop"), cls.workdir], check=True, timeout=60)
        assert not os.path.exists(cls.workdir), "stop must remove the workdir"

    def client(self, service, access_key, secret_key, session_token=None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.env["RGW_ENDPOINT"],
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            # Fail fast: a test of errors must not wait through botocore's retries.
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def agent_sts(self, secret=None):
        return self.client("sts", self.env["AGENT_ACCESS_KEY_ID"],
                           secret or self.env["AGENT_SECRET_ACCESS_KEY"])

    def assume_role(self, **extra):
        return self.agent_sts().assume_role(RoleArn=self.env["ROLE_ARN"],
                                            RoleSessionName="eks-smoke-pod-1234",
                                            DurationSeconds=900, **extra)

    def assume_role_for(self, seconds):
        return self.agent_sts().assume_role(RoleArn=self.env["ROLE_ARN"],
                                            RoleSessionName="eks-smoke-long",
                                            DurationSeconds=seconds)

    def role_s3(self):
        creds = self.assume_role()["Credentials"]
        return self.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"],
                           creds["SessionToken"])

    def test_assume_role_returns_credentials_for_the_role(self):
        response = self.assume_role()
        creds = response["Credentials"]
        self.assertTrue(creds["AccessKeyId"])
        self.assertTrue(creds["SecretAccessKey"])
        self.assertTrue(creds["SessionToken"])
        self.assertEqual(
            response["AssumedRoleUser"]["Arn"],
            f"arn:aws:sts::{self.env['ACCOUNT_ID']}:assumed-role/{self.env['ROLE_NAME']}/eks-smoke-pod-1234")
        remaining = creds["Expiration"].timestamp() - time.time()
        self.assertTrue(800 < remaining <= 900 + 5, remaining)

    def test_role_allows_sessions_up_to_twelve_hours(self):
        creds = self.assume_role_for(21600)["Credentials"]
        remaining = creds["Expiration"].timestamp() - time.time()
        self.assertTrue(21500 < remaining <= 21600 + 5, remaining)

    def test_role_session_lists_the_bucket_and_reads_the_object(self):
        s3 = self.role_s3()
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        self.assertIn(self.env["BUCKET"], names)
        body = s3.get_object(Bucket=self.env["BUCKET"], Key=self.env["OBJECT_KEY"])["Body"].read()
        self.assertEqual(body, b"hello from radosgw\n")

    def test_role_policy_denies_writes(self):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as caught:
            self.role_s3().put_object(Bucket=self.env["BUCKET"], Key="forbidden", Body=b"x")
        self.assertEqual(caught.exception.response["Error"]["Code"], "AccessDenied")

    def test_session_tags_are_accepted(self):
        # The agent sends EKS's six session tags, all transitive; radosgw must accept
        # (and, as FIELD-NOTES says, ignore) them.
        tags = [{"Key": k, "Value": v} for k, v in (
            ("eks-cluster-arn", "arn:aws:eks:us-east-1:111122223333:cluster/smoke"),
            ("eks-cluster-name", "smoke"),
            ("kubernetes-namespace", "default"),
            ("kubernetes-service-account", "app"),
            ("kubernetes-pod-name", "app-0"),
            ("kubernetes-pod-uid", "0b7b4a56-0a7e-4a39-9d0e-2d8a0c7f7c11"))]
        response = self.assume_role(Tags=tags, TransitiveTagKeys=[t["Key"] for t in tags])
        self.assertTrue(response["Credentials"]["SessionToken"])

    def test_wrong_secret_is_rejected(self):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as caught:
            self.agent_sts(secret="not-the-secret").assume_role(
                RoleArn=self.env["ROLE_ARN"], RoleSessionName="eks-smoke-bad")
        # radosgw answers with an S3-style error document that botocore's STS parser
        # cannot read, so only the status is reliable here.
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_unknown_role_is_rejected(self):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as caught:
            self.agent_sts().assume_role(
                RoleArn=f"arn:aws:iam::{self.env['ACCOUNT_ID']}:role/no-such-role",
                RoleSessionName="eks-smoke-unknown")
        self.assertIn(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], (403, 404))


if __name__ == "__main__":
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        print(f"SKIP: {', '.join(missing)} not installed "
              "(apt-get install --no-install-recommends ceph-mon ceph-osd radosgw)")
        sys.exit(77)
    unittest.main(verbosity=2)
