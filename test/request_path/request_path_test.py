#!/usr/bin/env python3
"""The whole request path without a cluster, as close to a real pod as it gets here.

1. `helm template` the chart with an association for demo-ns/demo-sa; take the rendered
   ConfigMap's associations.yaml (what both components would mount).
2. Run the real webhook with it (TLS, CA verified); send the AdmissionReview for the
   walkthrough's demo-app pod; apply the returned patch with `kubectl patch --local`.
3. From the patched pod take the env vars and the token path; mint a token as the API
   server would for that pod (audience, expiration from the projected volume) and write it
   where AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE points (re-rooted under a temp dir).
4. Run the real agent. When this process may add addresses (root with iproute2), the
   agent's own `setup-link` subcommand puts 169.254.170.23 on the loopback link and the
   agent listens exactly where AWS_CONTAINER_CREDENTIALS_FULL_URI points; otherwise it
   listens on 127.0.0.1 and the URI's host is rewritten (the test says which).
5. Run the AWS SDK for JavaScript with exactly the pod's environment against the agent
   and the test STS: it must obtain credentials and call GetCallerIdentity.

Environment: WEBHOOK_BIN, AGENT_BIN, MINT_TOKEN (ctest passes them).
"""

import base64
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(REPO_ROOT / "test" / "agent_integration"))
import agent_test  # noqa: E402  (Process, TestSts, Keys, constants)

WEBHOOK_BIN = os.environ.get("WEBHOOK_BIN", str(REPO_ROOT / "build" / "gcc" / "webhook" / "pod-identity-webhook"))
AGENT_BIN = agent_test.AGENT_BIN
LINK_LOCAL = "169.254.170.23"


def can_use_link_local():
    """True when the agent's setup-link can put 169.254.170.23 on `lo` and port 80 is free."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    result = subprocess.run([AGENT_BIN, "setup-link", "--link", "lo", "--address", f"{LINK_LOCAL}/32"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return False
    with socket.socket() as probe:
        try:
            probe.bind((LINK_LOCAL, 80))
        except OSError:
            return False
    return True


class RequestPathTest(unittest.TestCase):
    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="request-path-"))
        self.processes = []
        self.added_address = False

    def tearDown(self):
        for process in reversed(self.processes):
            process.stop()
        if self.added_address:
            subprocess.run(["ip", "addr", "del", f"{LINK_LOCAL}/32", "dev", "lo"], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def render_associations(self):
        values = self.tmp / "values.yaml"
        values.write_text("clusterName: request-path\nassociations:\n  - namespace: demo-ns\n    serviceAccount: demo-sa\n"
                          f"    roleArn: {agent_test.ROLE}\n")
        rendered = subprocess.run(["helm", "template", "pod-identity", str(REPO_ROOT / "charts" / "pod-identity"),
                                   "-n", "pod-identity", "-f", str(values), "--show-only",
                                   "templates/associations-configmap.yaml"],
                                  check=True, capture_output=True, text=True).stdout
        # The ConfigMap's data is a literal block; take it without a YAML library.
        lines = rendered.splitlines()
        start = next(i for i, l in enumerate(lines) if l.strip() == "associations.yaml: |") + 1
        body = [l[4:] for l in lines[start:] if l.startswith("    ")]
        path = self.tmp / "associations.yaml"
        path.write_text("\n".join(body) + "\n")
        return path

    def mutate(self, associations):
        webhook = agent_test.Process([WEBHOOK_BIN, "--port", "0", "--self-signed-ca-file", str(self.tmp / "ca.pem"),
                                      "--associations", str(associations)])
        self.processes.append(webhook)
        port = webhook.wait_for(lambda l: l.get("msg") == "listening", "the webhook to listen")["port"]
        context = ssl.create_default_context(cafile=str(self.tmp / "ca.pem"))
        review = (REPO_ROOT / "examples" / "demo-admission-review.json").read_bytes()
        request = urllib.request.Request(f"https://localhost:{port}/mutate", data=review,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            answer = json.loads(response.read())
        self.assertTrue(answer["response"]["allowed"])
        patch = base64.b64decode(answer["response"]["patch"]).decode()
        pod = json.loads(review)["request"]["object"]
        pod_file = self.tmp / "pod.json"
        pod_file.write_text(json.dumps(pod))
        patched = subprocess.run(["kubectl", "patch", "--local", "-f", str(pod_file), "--type=json", "-p", patch,
                                  "-o", "json"], check=True, capture_output=True, text=True).stdout
        return json.loads(patched)

    def test_sdk_in_the_patched_pods_environment_gets_credentials(self):
        pod = self.mutate(self.render_associations())
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        uri, token_path = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
        self.assertEqual(uri, f"http://{LINK_LOCAL}/v1/credentials")
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "eks-pod-identity-token")
        source = volume["projected"]["sources"][0]["serviceAccountToken"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "eks-pod-identity-token")
        self.assertEqual(token_path, f"{mount['mountPath']}/{source['path']}")

        # The kubelet's part: a token for this pod, at the mounted path (re-rooted).
        keys = agent_test.Keys(self.tmp)
        token = keys.mint(namespace=pod["metadata"]["namespace"], service_account=pod["spec"]["serviceAccountName"],
                          pod_name=pod["metadata"]["name"], pod_uid="7d5c6f0e-0c56-4a44-9b1e-3c1c7c3b2a10",
                          audience=source["audience"], extra=["--ttl", str(source["expirationSeconds"])])
        token_file = self.tmp / "root" / token_path.lstrip("/")
        token_file.parent.mkdir(parents=True)
        token_file.write_text(token)

        sts = agent_test.TestSts()
        self.processes.append(sts.process)
        link_local = can_use_link_local()
        self.added_address = link_local
        host, port = (LINK_LOCAL, "80") if link_local else ("127.0.0.1", "0")
        agent_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        agent_env.update({"AWS_ACCESS_KEY_ID": agent_test.AGENT_KEY_ID, "AWS_SECRET_ACCESS_KEY": agent_test.AGENT_SECRET})
        agent = agent_test.Process([AGENT_BIN, "--bind-hosts", host, "--port", port, "--probe-host", "127.0.0.1",
                                    "--probe-port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
                                    "--jwks-file", str(keys.jwks), "--issuer", agent_test.ISSUER,
                                    "--associations", str(self.tmp / "associations.yaml"), "--broker", "sts",
                                    "--sts-endpoint", sts.endpoint, "--region", "us-east-1"], env=agent_env)
        self.processes.append(agent)
        bound = agent.wait_for(lambda l: l.get("msg") == "listening" and l.get("listener") == "credentials",
                               "the agent to listen")["port"]
        if not link_local:
            uri = f"http://127.0.0.1:{bound}/v1/credentials"
            print("note: cannot add 169.254.170.23 here; the agent listens on 127.0.0.1 and the URI is rewritten",
                  file=sys.stderr)

        pod_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        pod_env.update(env)  # exactly what the webhook injected ...
        pod_env.update({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
                        "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
                        "STS_ENDPOINT": sts.endpoint, "NODE_NO_WARNINGS": "1"})
        result = subprocess.run(["node", str(agent_test.TEST_STS_DIR / "client.mjs")],
                                env=pod_env, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr + "\n".join(agent.output()[-10:]))
        identity = json.loads(result.stdout)
        self.assertEqual(identity["Account"], "111122223333")
        self.assertRegex(identity["Arn"], r"assumed-role/eks-pod-s3-readonly-access/eks-request-path-demo-app-")
        calls = sts.requests()
        self.assertEqual(len(calls), 1)
        tags = {t["Key"]: t["Value"] for t in calls[0]["params"]["Tags"]}
        self.assertEqual(tags["kubernetes-pod-name"], "demo-app")
        self.assertEqual(tags["eks-cluster-name"], "request-path")


if __name__ == "__main__":
    unittest.main()
