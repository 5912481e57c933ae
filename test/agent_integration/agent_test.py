#!/usr/bin/env python3
"""Integration tests: the real pod-identity-agent with real AWS clients.

Each test class starts a SigV4-verifying test STS (sts_server.mjs, @smithy/signature-v4)
and the agent binary on loopback (ephemeral ports read from its "listening" log lines),
with a JWKS and tokens made by the mint-token tool as the API server would make them.
The clients are the AWS SDK for JavaScript v3 (default chain), the AWS CLI and boto3,
configured exactly like an injected pod: AWS_CONTAINER_CREDENTIALS_FULL_URI and
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.

Environment: AGENT_BIN, MINT_TOKEN (ctest passes both). Nothing sleeps to synchronise:
tests wait for log lines or responses, each bounded by a deadline.
"""

import concurrent.futures
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "pylib"))
from testlib import DEADLINE, LogProcess, wait_until  # noqa: E402,F401  (re-exported to radosgw_test)
AGENT_BIN = os.environ.get("AGENT_BIN", str(REPO_ROOT / "build" / "gcc" / "agent" / "pod-identity-agent"))
TEST_STS_DIR = REPO_ROOT / "test" / "peers" / "test-sts"
MINT_TOKEN = os.environ.get("MINT_TOKEN", str(REPO_ROOT / "build" / "gcc" / "test" / "tools" / "mint-token"))
ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "pods.eks.amazonaws.com"
AGENT_KEY_ID = "AKIDPODIDENTITYAGENT"
AGENT_SECRET = "agent-secret-key-for-tests"
ROLE = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access"

ASSOCIATIONS = f"""\
clusterName: integration
associations:
  - namespace: demo-ns
    serviceAccount: demo-sa
    roleArn: {ROLE}
  - namespace: cross
    serviceAccount: reader
    roleArn: arn:aws:iam::111122223333:role/first-hop
    targetRoleArn: arn:aws:iam::444455556666:role/data-reader
  - namespace: scoped
    serviceAccount: app
    roleArn: arn:aws:iam::111122223333:role/scoped
    disableSessionTags: true
    policy: '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}}]}}'
"""


# The agent and the test STS print their log lines on stdout and stderr: read both.
Process = LogProcess


class TestSts:
    """The SigV4-verifying test STS (test/peers/test-sts/server.mjs), seen through the
    shapes these tests use: AssumeRole records with STS's parameter names, and faults."""

    FAULT_NAMES = {"throttle": "throttleNext", "fail": "errorNext", "delayMs": "delayMs",
                   "denyRoles": "denyRoleArns", "lifetimeSeconds": "credentialLifetimeSeconds"}

    def __init__(self):
        self.process = Process(["node", str(TEST_STS_DIR / "server.mjs")],
                               env={**os.environ, "TEST_STS_KEYS": f"{AGENT_KEY_ID}={AGENT_SECRET}"})
        self.port = self.process.wait_for(lambda l: "port" in l, "the test STS to listen")["port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return json.loads(text) if text else None

    @staticmethod
    def _normalize(record):
        parsed = record.get("parsed") or {}
        params = record.get("params") or {}
        return {
            "action": record.get("action"),
            "accessKeyId": record.get("accessKeyId"),
            "issuedAccessKeyId": record.get("issuedAccessKeyId"),
            "signatureValid": (record.get("error") or {}).get("code") not in
                              ("SignatureDoesNotMatch", "IncompleteSignature", "InvalidClientTokenId"),
            "params": {
                "RoleArn": parsed.get("roleArn", params.get("RoleArn")),
                "RoleSessionName": parsed.get("roleSessionName", params.get("RoleSessionName")),
                "Policy": parsed.get("policy") or None,
                "Tags": [{"Key": t["key"], "Value": t["value"]} for t in parsed.get("tags", [])],
                "TransitiveTagKeys": parsed.get("transitiveTagKeys", []),
            },
        }

    def requests(self, action="AssumeRole"):
        records = [r for r in self._call("GET", "/_requests") if r.get("kind") == "sts" or action is None]
        return [self._normalize(r) for r in records if action is None or r.get("action") == action]

    def reset(self):
        self._call("POST", "/_reset", {})

    def faults(self, **faults):
        self._call("POST", "/_faults", {self.FAULT_NAMES[k]: v for k, v in faults.items()})


class Keys:
    """An RS256 and an ES256 signing key, a JWKS with both, and a minting helper."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        for alg, kid in (("RS256", "rsa-key"), ("ES256", "ec-key")):
            subprocess.run([MINT_TOKEN, "keygen", "--alg", alg, "--kid", kid, "--out-key", str(self.dir / f"{kid}.pem"),
                            "--out-jwks", str(self.dir / f"{kid}.jwks")], check=True)
        keys = []
        for kid in ("rsa-key", "ec-key"):
            keys += json.loads((self.dir / f"{kid}.jwks").read_text())["keys"]
        self.jwks = self.dir / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": keys}))
        # A key the agent does not know, for forged tokens.
        subprocess.run([MINT_TOKEN, "keygen", "--alg", "RS256", "--kid", "rsa-key", "--out-key",
                        str(self.dir / "forger.pem"), "--out-jwks", str(self.dir / "forger.jwks")], check=True)

    def mint(self, namespace="demo-ns", service_account="demo-sa", pod_name="demo-app", pod_uid="uid-demo-app",
             kid="rsa-key", key=None, issuer=ISSUER, audience=AUDIENCE, extra=()):
        argv = [MINT_TOKEN, "mint", "--key", str(self.dir / f"{key or kid}.pem"), "--kid", kid, "--issuer", issuer,
                "--audience", audience, "--namespace", namespace, "--service-account", service_account]
        if pod_name is not None:
            argv += ["--pod-name", pod_name, "--pod-uid", pod_uid]
        argv += list(extra)
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class Agent:
    def __init__(self, directory, keys, sts, extra=()):
        self.dir = pathlib.Path(directory)
        self.associations = self.dir / "associations.yaml"
        if not self.associations.exists():
            self.associations.write_text(ASSOCIATIONS)
        self.process = Process(self.command(keys, sts, self.associations, 0, extra), env=self.environment())
        listening = {}
        for listener in ("credentials", "probes", "metrics"):
            line = self.process.wait_for(lambda l, n=listener: l.get("msg") == "listening" and l.get("listener") == n,
                                         f"the agent's {listener} listener")
            listening[listener] = line["port"]
        self.port, self.probe_port, self.metrics_port = listening["credentials"], listening["probes"], listening["metrics"]
        self.uri = f"http://127.0.0.1:{self.port}/v1/credentials"
        self.process.wait_for(lambda l: l.get("msg") == "ready", "the agent to be ready")

    @staticmethod
    def command(keys, sts, associations, port, extra=()):
        return [AGENT_BIN, "--bind-hosts", "127.0.0.1", "--port", str(port), "--probe-host", "127.0.0.1",
                "--probe-port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
                "--jwks-file", str(keys.jwks), "--issuer", ISSUER, "--associations",
                str(associations), "--broker", "sts", "--sts-endpoint", sts.endpoint,
                "--region", "us-east-1", "--reload-interval-ms", "200", *extra]

    @staticmethod
    def environment():
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": AGENT_KEY_ID, "AWS_SECRET_ACCESS_KEY": AGENT_SECRET})
        return env

    def get(self, token=None, host=None, path="/v1/credentials", port=None):
        request = urllib.request.Request(f"http://127.0.0.1:{port or self.port}{path}")
        if token is not None:
            request.add_header("Authorization", token)
        if host is not None:
            request.add_header("Host", host)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.headers.get("Content-Type"), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type"), json.loads(error.read() or b"null")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def stop(self):
        return self.process.stop()


class AgentTestCase(unittest.TestCase):
    AGENT_FLAGS = ()
    # The credentials listener's server model; the *EventLoopTest classes below run the
    # same tests on the epoll event loops.
    SERVER_FLAGS = ("--event-loops", "0")
    # A token over 8 KiB: cpp-httplib rejects the headers (400); the event loops take
    # headers up to 64 KiB, so the verifier rejects the token (400), and beyond that
    # answer 431 (RFC 6585).
    OVERSIZE_HEADERS = (400, "bad_request")
    HUGE_HEADERS = (400, "bad_request")

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="agent-test-")
        cls.sts = TestSts()
        cls.keys = Keys(cls.tmp)
        cls.agent = Agent(cls.tmp, cls.keys, cls.sts, cls.AGENT_FLAGS + cls.SERVER_FLAGS)

    @classmethod
    def tearDownClass(cls):
        code = cls.agent.stop()
        cls.sts.process.stop()
        logs = "\n".join(cls.agent.process.output())
        shutil.rmtree(cls.tmp, ignore_errors=True)
        # Never a token, a secret key or a session token in the agent's log.
        assert AGENT_SECRET not in logs, "the agent logged its own secret key"
        assert "IQoJb3JpZ2luX2VjE" not in logs, "the agent logged a session token"
        assert not re.search(r"eyJ[\w-]{20,}\.", logs), "the agent logged a token"
        assert code == 0, f"agent exit code {code} after SIGTERM"

    def pod_env(self, token, extra=None):
        token_file = pathlib.Path(self.tmp) / f"token-{time.monotonic_ns()}"
        token_file.write_text(token)  # no trailing newline, as the kubelet writes it
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.agent.uri,
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
                    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                    "AWS_EC2_METADATA_DISABLED": "true", "STS_ENDPOINT": self.sts.endpoint,
                    "NODE_NO_WARNINGS": "1", "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"})
        env.update(extra or {})
        return env


class SdkClientsTest(AgentTestCase):
    """The SDKs' default chains resolve credentials through the agent."""

    def assert_role_identity(self, identity, pod="demo-app"):
        self.assertEqual(identity["Account"], "111122223333")
        self.assertRegex(identity["Arn"], rf"^arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-integration-{pod}-")

    def test_javascript_sdk_default_chain(self):
        env = self.pod_env(self.keys.mint())
        result = subprocess.run(["node", str(TEST_STS_DIR / "client.mjs")], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        identity = json.loads(result.stdout)
        self.assert_role_identity(identity)
        self.assertTrue(identity["AccessKeyId"].startswith("ASIA"))

    def test_aws_cli(self):
        env = self.pod_env(self.keys.mint(pod_name="cli-pod", pod_uid="uid-cli"))
        result = subprocess.run(["aws", "sts", "get-caller-identity", "--endpoint-url", self.sts.endpoint, "--output", "json"],
                                env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assert_role_identity(json.loads(result.stdout), pod="cli-pod")

    def test_boto3(self):
        env = self.pod_env(self.keys.mint(pod_name="boto-pod", pod_uid="uid-boto", kid="ec-key"))
        script = ("import boto3, json, os\n"
                  "c = boto3.Session().client('sts', endpoint_url=os.environ['STS_ENDPOINT'])\n"
                  "i = c.get_caller_identity()\n"
                  "print(json.dumps({'Account': i['Account'], 'Arn': i['Arn']}))\n")
        result = subprocess.run(["python3", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assert_role_identity(json.loads(result.stdout), pod="boto-pod")

    def test_response_shape_and_session_tags(self):
        status, content_type, body = self.agent.get(self.keys.mint(pod_name="shape", pod_uid="uid-shape"))
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "application/json")
        self.assertEqual(set(body), {"AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"})
        self.assertRegex(body["Expiration"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(body["AccountId"], "111122223333")
        call = next(r for r in self.sts.requests() if r.get("issuedAccessKeyId") == body["AccessKeyId"])
        self.assertTrue(call["signatureValid"])
        params = call["params"]
        self.assertEqual(params["RoleArn"], ROLE)
        self.assertRegex(params["RoleSessionName"], r"^eks-integration-shape-[0-9a-f-]+$")
        self.assertLessEqual(len(params["RoleSessionName"]), 64)
        tags = {t["Key"]: t["Value"] for t in params["Tags"]}
        self.assertEqual(tags, {"eks-cluster-name": "integration", "kubernetes-namespace": "demo-ns",
                                "kubernetes-service-account": "demo-sa", "kubernetes-pod-name": "shape",
                                "kubernetes-pod-uid": "uid-shape"})
        self.assertEqual(sorted(params["TransitiveTagKeys"]), sorted(tags))

    def test_target_role_second_hop(self):
        status, _, body = self.agent.get(self.keys.mint(namespace="cross", service_account="reader", pod_name="x", pod_uid="uid-x"))
        self.assertEqual(status, 200, body)
        calls = [r for r in self.sts.requests() if r["params"]["RoleArn"] in
                 ("arn:aws:iam::111122223333:role/first-hop", "arn:aws:iam::444455556666:role/data-reader")]
        self.assertEqual([c["params"]["RoleArn"] for c in calls[-2:]],
                         ["arn:aws:iam::111122223333:role/first-hop", "arn:aws:iam::444455556666:role/data-reader"])
        self.assertEqual(calls[-1]["accessKeyId"], calls[-2]["issuedAccessKeyId"], "second hop not signed by the first hop")
        self.assertEqual(body["AccessKeyId"], calls[-1]["issuedAccessKeyId"])
        self.assertEqual(body["AccountId"], "444455556666")

    def test_session_policy_without_tags(self):
        status, _, body = self.agent.get(self.keys.mint(namespace="scoped", service_account="app", pod_name="s", pod_uid="uid-s"))
        self.assertEqual(status, 200, body)
        call = next(r for r in self.sts.requests() if r.get("issuedAccessKeyId") == body["AccessKeyId"])
        self.assertEqual(call["params"]["Tags"], [])
        self.assertIn("s3:ListAllMyBuckets", call["params"]["Policy"])

    def test_probes_and_metrics(self):
        self.assertEqual(self.agent.get(path="/healthz", port=self.agent.probe_port)[0], 200)
        self.assertEqual(self.agent.get(path="/readyz", port=self.agent.probe_port)[0], 200)
        token = self.keys.mint(pod_name="m", pod_uid="uid-m")
        self.assertEqual(self.agent.get(token)[0], 200)
        self.assertEqual(self.agent.get(token)[0], 200)  # the same token: the verified-token cache
        metrics = self.agent.metrics()
        self.assertRegex(metrics, r'pod_identity_agent_token_verifications_total\{source="signature"\} [1-9]')
        self.assertRegex(metrics, r'pod_identity_agent_token_verifications_total\{source="cache"\} [1-9]')
        self.assertRegex(metrics, r'pod_identity_agent_requests_total\{code="200",outcome="ok"\} [1-9]')
        self.assertIn("pod_identity_agent_cache_total{outcome=", metrics)
        self.assertIn("pod_identity_agent_broker_duration_seconds_count", metrics)
        self.assertIn('pod_identity_agent_jwks_refreshes_total{trigger="initial",result="updated"} 1', metrics)

    def test_log_line_per_request(self):
        self.agent.get(self.keys.mint(pod_name="logged", pod_uid="uid-logged"))
        line = self.agent.process.wait_for(lambda l: l.get("msg") == "credentials request" and l.get("pod") == "logged",
                                           "the request's log line")
        for key in ("namespace", "service_account", "pod", "status", "outcome", "cache_hit", "latency_ms"):
            self.assertIn(key, line)


class SecurityTableTest(AgentTestCase):
    """Bad requests get the right status and code, never reach STS, and leak nothing."""

    AGENT_FLAGS = ("--rate-limit", "0")

    def test_table(self):
        now = int(time.time())
        cases = [
            ("forged signature", self.keys.mint(key="forger"), 400, "bad_signature"),
            ("alg none", self.keys.mint(extra=["--alg-override", "none"]), 400, "algorithm_not_allowed"),
            ("HS256 with the public key", self.keys.mint(extra=["--alg-override", "HS256"]), 400, "algorithm_not_allowed"),
            ("wrong audience", self.keys.mint(audience="sts.amazonaws.com"), 400, "wrong_audience"),
            ("wrong issuer", self.keys.mint(issuer="https://evil.example.com"), 400, "wrong_issuer"),
            ("expired", self.keys.mint(extra=["--ttl", "-3600"]), 400, "token_expired"),
            ("not yet valid", self.keys.mint(extra=["--not-before-offset", "3600"]), 400, "token_not_yet_valid"),
            ("unknown kid", self.keys.mint(kid="unknown-kid", key="rsa-key"), 400, "unknown_key_id"),
            ("sub disagrees", self.keys.mint(extra=["--subject", "system:serviceaccount:kube-system:admin"]), 400, "subject_mismatch"),
            ("no pod binding", self.keys.mint(pod_name=None, extra=["--no-pod"]), 400, "missing_pod_claim"),
            ("no association", self.keys.mint(namespace="other", service_account="nobody"), 404, "no_association"),
            ("over the size limit", self.keys.mint(extra=["--pad-bytes", "4700"]), 400, "token_too_large"),
            ("headers over 8 KiB", self.keys.mint(extra=["--pad-bytes", "9000"]), *self.OVERSIZE_HEADERS),
            ("headers over 64 KiB", self.keys.mint(extra=["--pad-bytes", "70000"]), *self.HUGE_HEADERS),
            ("garbage", "not-a-token", 400, "token_malformed"),
        ]
        self.sts.reset()
        for name, token, status, code in cases:
            with self.subTest(name):
                got_status, content_type, body = self.agent.get(token)
                self.assertEqual((got_status, body.get("code")), (status, code), body)
                self.assertEqual(content_type, "application/json")
                self.assertTrue(body["message"])
                self.assertNotIn(token[:40], json.dumps(body))
        with self.subTest("wrong Host header"):
            status, _, body = self.agent.get(self.keys.mint(), host="attacker.example.com")
            self.assertEqual((status, body["code"]), (403, "wrong_host"))
        with self.subTest("no Authorization header"):
            status, _, body = self.agent.get(None)
            self.assertEqual((status, body["code"]), (400, "missing_token"))
        with self.subTest("unknown path and method"):
            self.assertEqual(self.agent.get(self.keys.mint(), path="/v2/credentials")[0], 404)
        self.assertEqual(self.sts.requests(None), [], "a rejected request reached STS")
        self.assertLess(now, int(time.time()) + 1)


    def test_wrong_method_and_path(self):
        token = self.keys.mint()
        cases = [("POST", "/v1/credentials", 405, "method_not_allowed"),
                 ("DELETE", "/v1/credentials", 405, "method_not_allowed"),
                 ("GET", "/v1/other", 404, "not_found"),
                 ("GET", "/", 404, "not_found")]
        for method, path, status, code in cases:
            with self.subTest(f"{method} {path}"):
                conn = http.client.HTTPConnection("127.0.0.1", self.agent.port, timeout=10)
                try:
                    conn.request(method, path, body=b"{}" if method == "POST" else None,
                                 headers={"Authorization": token})
                    response = conn.getresponse()
                    body = json.loads(response.read())
                finally:
                    conn.close()
                self.assertEqual((response.status, body.get("code")), (status, code), body)
                self.assertEqual(response.getheader("Content-Type"), "application/json")
                if status == 405:
                    self.assertEqual(response.getheader("Allow"), "GET")


class CacheTest(AgentTestCase):
    """One STS call for a burst, refresh ahead of expiry, serving through outages, eviction."""

    AGENT_FLAGS = ("--rate-limit", "0", "--max-credential-retention-before-renewal", "1s")

    def setUp(self):
        self.sts.reset()

    def test_burst_of_100_makes_one_sts_call(self):
        token = self.keys.mint(pod_name="burst", pod_uid="uid-burst")
        self.sts.faults(delayMs=300)  # keep the first call in flight while the burst arrives
        with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(lambda _: self.agent.get(token), range(100)))
        self.assertEqual({r[0] for r in results}, {200})
        self.assertEqual(len(self.sts.requests()), 1, [r["params"]["RoleSessionName"] for r in self.sts.requests()][:5])
        self.assertEqual(len({r[2]["AccessKeyId"] for r in results}), 1)
        self.assertEqual(len(self.sts.requests()), 1)

    def test_refresh_ahead(self):
        token = self.keys.mint(pod_name="refresh", pod_uid="uid-refresh")
        first = self.agent.get(token)[2]["AccessKeyId"]
        # Renewal is due 1 s after the fetch (--max-credential-retention-before-renewal 1s):
        # the cached credentials keep being served until a request renews them.
        renewed = wait_until(lambda: (lambda r: r[2]["AccessKeyId"] != first and r)(self.agent.get(token)),
                             "refresh-ahead to renew the credentials", timeout=15, interval=0.1)
        self.assertEqual(renewed[0], 200)
        self.assertEqual(len(self.sts.requests()), 2)
        self.agent.process.wait_for(lambda l: l.get("pod") == "refresh" and l.get("cache") == "refreshed",
                                    "a log line with cache=refreshed")

    def test_outage_serves_cached_until_near_expiry_then_503(self):
        self.sts.faults(lifetimeSeconds=63)  # usable for 3 s (never served with < 60 s left)
        token = self.keys.mint(pod_name="outage", pod_uid="uid-outage")
        status, _, cached = self.agent.get(token)
        self.assertEqual(status, 200)
        self.sts.faults(fail=100000)
        statuses = []

        def until_503():
            status, _, body = self.agent.get(token)
            statuses.append(status)
            if status == 200:
                self.assertEqual(body["AccessKeyId"], cached["AccessKeyId"])
            return status == 503 and body
        body = wait_until(until_503, "cached credentials to run out during the outage", timeout=20, interval=0.2)
        self.assertEqual(body["code"], "broker_unavailable")
        self.assertIn(200, statuses[:-1], "cached credentials were not served during the outage")
        self.agent.process.wait_for(lambda l: l.get("pod") == "outage" and l.get("cache") == "served_stale_on_error",
                                    "a log line with cache=served_stale_on_error")

    def test_access_denied_evicts(self):
        token = self.keys.mint(pod_name="denied", pod_uid="uid-denied")
        self.assertEqual(self.agent.get(token)[0], 200)
        self.sts.faults(denyRoles=[ROLE])
        result = wait_until(lambda: (lambda r: r[0] != 200 and r)(self.agent.get(token)),
                            "the renewal to be denied", timeout=15, interval=0.1)
        self.assertEqual((result[0], result[2]["code"]), (400, "broker_access_denied"))
        calls = len(self.sts.requests())
        # Evicted: the next request asks STS again instead of serving the old credentials.
        self.assertEqual(self.agent.get(token)[0], 400)
        self.assertEqual(len(self.sts.requests()), calls + 1)


class RateLimitTest(AgentTestCase):
    AGENT_FLAGS = ("--rate-limit", "1", "--rate-burst", "5")

    def test_throttles_a_client_beyond_its_burst(self):
        token = self.keys.mint(pod_name="noisy", pod_uid="uid-noisy")
        statuses = [self.agent.get(token)[0] for _ in range(12)]
        self.assertEqual(statuses[:5], [200] * 5)
        self.assertIn(429, statuses[5:])
        body = self.agent.get(token)[2]
        self.assertEqual(body["code"], "throttled")


class ConnectionsTest(AgentTestCase):
    """Pods' SDKs keep their connections to the agent open and each holds an agent thread
    (cpp-httplib's model); threads start on demand, so the idle connections of many pods
    never make a new pod wait for one of them to time out (30 s, longer than SDKs wait)."""
    AGENT_FLAGS = ("--rate-limit", "0")

    def test_idle_keep_alive_connections_do_not_starve_a_new_one(self):
        token = self.keys.mint(pod_name="kept", pod_uid="uid-kept")
        held = []
        for i in range(48):
            conn = http.client.HTTPConnection("127.0.0.1", self.agent.port, timeout=10)
            self.addCleanup(conn.close)
            conn.request("GET", "/v1/credentials", headers={"Authorization": token})
            response = conn.getresponse()
            response.read()
            self.assertEqual(response.status, 200, f"connection {i + 1}")
            held.append(conn)
        status, _, body = self.agent.get(token)
        self.assertEqual(status, 200)
        self.assertIn("AccessKeyId", body)
        for conn in held:
            conn.close()

    def test_a_second_agent_cannot_share_the_address(self):
        # No SO_REUSEPORT: a second process on the same address and port must fail to
        # start instead of silently taking a share of the pods' credential requests.
        second = Process(Agent.command(self.keys, self.sts, self.agent.associations, self.agent.port,
                                       self.SERVER_FLAGS),
                         env=Agent.environment())
        self.addCleanup(second.kill)
        self.assertEqual(second.wait_exit(), 1)
        self.assertIn("could not listen on any credentials address", second.text())
        self.assertEqual(self.agent.get(self.keys.mint(pod_name="still", pod_uid="uid-still"))[0], 200)


class ReloadTest(AgentTestCase):
    AGENT_FLAGS = ("--rate-limit", "0")

    def test_association_removed_then_404(self):
        token = self.keys.mint(namespace="scoped", service_account="app", pod_name="r", pod_uid="uid-r")
        wait_until(lambda: self.agent.get(token)[0] == 200, "the association to work", timeout=10, interval=0.5)
        text = ASSOCIATIONS.split("  - namespace: scoped")[0]
        tmp = self.agent.associations.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.agent.associations)
        wait_until(lambda: self.agent.get(token)[0] == 404, "the removed association to answer 404", timeout=15, interval=0.5)


EVENT_LOOPS = ("--event-loops", "2")


class SdkClientsEventLoopTest(SdkClientsTest):
    SERVER_FLAGS = EVENT_LOOPS


class SecurityTableEventLoopTest(SecurityTableTest):
    SERVER_FLAGS = EVENT_LOOPS
    OVERSIZE_HEADERS = (400, "token_too_large")
    HUGE_HEADERS = (431, "headers_too_large")


class CacheEventLoopTest(CacheTest):
    SERVER_FLAGS = EVENT_LOOPS


class RateLimitEventLoopTest(RateLimitTest):
    SERVER_FLAGS = EVENT_LOOPS


class ConnectionsEventLoopTest(ConnectionsTest):
    SERVER_FLAGS = EVENT_LOOPS


if __name__ == "__main__":
    unittest.main()
