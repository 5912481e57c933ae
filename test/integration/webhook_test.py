#!/usr/bin/env python3
"""Integration tests: the real pod-identity-webhook binary over real TLS.

Each test starts the binary on an ephemeral port (--port 0; the port is read from its
"listening" log line) with a test CA and serving certificates made by the `openssl`
CLI, and talks to it as the API server does: HTTPS with the server certificate
verified against the CA for the name "localhost".

Environment: WEBHOOK_BIN (the binary; ctest passes it), REPO_ROOT (for fixtures).
Run one class: python3 -m unittest -v webhook_test.AdmissionTest
Nothing sleeps to synchronise: tests wait for log lines, metrics or responses, each
bounded by a deadline.
"""

import base64
import http.client
import json
import os
import pathlib
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pylib"))
from testlib import DEADLINE, LogProcess, wait_until, write_atomically  # noqa: E402
REPO_ROOT = pathlib.Path(os.environ.get("REPO_ROOT", HERE.parent.parent))
WEBHOOK_BIN = os.environ.get("WEBHOOK_BIN", str(REPO_ROOT / "build" / "gcc" / "webhook" / "pod-identity-webhook"))
ADMISSION_FIXTURES = REPO_ROOT / "test" / "webhook" / "testdata" / "admission"
MAX_REQUEST_BYTES = 3 * 1024 * 1024

START_TIMEOUT = DEADLINE
REQUEST_TIMEOUT = 15.0

DEMO_ASSOCIATIONS = """\
clusterName: test
associations:
  - namespace: demo-ns
    serviceAccount: demo-sa
    roleArn: arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access
"""
LATE_ASSOCIATION = """\
  - namespace: late-ns
    serviceAccount: late-sa
    roleArn: arn:aws:iam::111122223333:role/late-role
"""


# --- certificates -------------------------------------------------------------------

class Pki:
    """A test CA and serving certificates issued with the openssl CLI."""

    def __init__(self, directory, name="test-ca"):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_cert = self.dir / f"{name}.crt"
        self.ca_key = self.dir / f"{name}.key"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2", "-subj", f"/CN={name}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    @staticmethod
    def _openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    def issue(self, directory, serial, names=("localhost",), ips=("127.0.0.1", "::1")):
        """Writes tls.crt and tls.key for `names` into `directory`, with a known serial."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key, csr, cert = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
        ext = directory / "ext.cnf"
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in ips])
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-set_serial", f"0x{serial:X}", "-days", "2", "-extfile", ext, "-out", cert)
        csr.unlink()
        ext.unlink()
        return cert, key


def client_context(ca_file):
    """What the API server does: verify the chain and the host name."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# --- the process --------------------------------------------------------------------

class Webhook(LogProcess):
    """The binary as a child process (its JSON log lines come from stderr), with HTTP helpers."""

    def __init__(self, args, ca_file=None):
        super().__init__([WEBHOOK_BIN, *map(str, args)], stream="stderr")
        self.args = self.argv
        self.ca_file = ca_file
        self.port = None

    def wait_listening(self):
        line = self.wait_log(lambda l: l.get("msg") == "listening", "'listening'", timeout=START_TIMEOUT)
        self.port = int(line["port"])
        return self

    def stderr_text(self):
        return self.text()

    # HTTP helpers ---------------------------------------------------------------------
    def connection(self, ca_file=None, host="localhost"):
        ctx = client_context(ca_file or self.ca_file)
        return http.client.HTTPSConnection(host, self.port, context=ctx, timeout=REQUEST_TIMEOUT)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            if own:
                conn.close()

    def admit(self, review, conn=None):
        body = json.dumps(review).encode() if not isinstance(review, bytes) else review
        status, headers, data = self.request("POST", "/mutate", body, {"Content-Type": "application/json"}, conn)
        return status, json.loads(data) if data else None

    def metrics(self):
        status, headers, data = self.request("GET", "/metrics")
        assert status == 200, status
        return headers, data.decode()


def metric_value(text, name, labels=""):
    """The value of one sample in Prometheus text, or None."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return None


def load_review(name="demo_pod_create.json"):
    return json.loads((ADMISSION_FIXTURES / name).read_text())


def review_for(namespace, service_account, uid, name="pod"):
    review = load_review()
    review["request"]["uid"] = uid
    review["request"]["namespace"] = namespace
    review["request"]["name"] = name
    obj = review["request"]["object"]
    obj["metadata"] = {"name": name, "namespace": namespace}
    obj["spec"]["serviceAccountName"] = service_account
    obj["spec"]["containers"][0]["env"] = []
    return review


def decode_patch(review_response):
    response = review_response["response"]
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


class Load:
    """Background threads sending admissions until stopped; records every failure."""

    def __init__(self, webhook, reviews, threads=4, new_connection_every=1):
        self.webhook = webhook
        self.reviews = reviews
        self.stop_event = threading.Event()
        self.failures = queue.Queue()
        self.counts = [0] * threads
        self.new_connection_every = new_connection_every
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index):
        conn = None
        n = 0
        while not self.stop_event.is_set():
            review = self.reviews[n % len(self.reviews)]
            try:
                if conn is None or n % self.new_connection_every == 0:
                    if conn is not None:
                        conn.close()
                    conn = self.webhook.connection()
                status, body = self.webhook.admit(review, conn)
                if status != 200 or body["response"]["uid"] != review["request"]["uid"]:
                    self.failures.put(f"thread {index}: status {status}: {body}")
            except Exception as e:  # noqa: BLE001 - every failure is a test failure
                self.failures.put(f"thread {index}: {type(e).__name__}: {e}")
                conn = None
            n += 1
            self.counts[index] = n
        if conn is not None:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        # Traffic is flowing before the caller changes anything.
        wait_until(lambda: all(c > 0 for c in self.counts), "every load thread to complete a request")
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=REQUEST_TIMEOUT * 2)

    def assert_no_failures(self, test):
        failures = []
        while not self.failures.empty():
            failures.append(self.failures.get())
        test.assertEqual(failures, [], "requests failed while the server was reloading")
        test.assertTrue(all(c > 1 for c in self.counts), f"too little traffic: {self.counts}")


class WebhookTestCase(unittest.TestCase):
    def make_tempdir(self):
        d = tempfile.mkdtemp(prefix="webhook-it-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        return pathlib.Path(d)

    def start(self, args, ca_file):
        webhook = Webhook(args, ca_file)
        self.addCleanup(webhook.kill)
        return webhook.wait_listening()


# --- tests --------------------------------------------------------------------------

class AdmissionTest(WebhookTestCase):
    """Admission responses and the bad-input table on one server."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = pathlib.Path(tempfile.mkdtemp(prefix="webhook-it-"))
        cls.pki = Pki(cls.tmp / "pki")
        cert, key = cls.pki.issue(cls.tmp / "serving", serial=0x1001)
        associations = cls.tmp / "associations.yaml"
        associations.write_text(DEMO_ASSOCIATIONS)
        cls.webhook = Webhook(["--port", "0", "--bind-address", "127.0.0.1", "--tls-cert-file", cert,
                               "--tls-key-file", key, "--associations", associations], cls.pki.ca_cert)
        try:
            cls.webhook.wait_listening()
        except Exception:
            cls.webhook.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.webhook.signal(signal.SIGTERM)
        rc = cls.webhook.wait_exit()
        cls.webhook.kill()  # closes the pipe
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, f"exit code {rc}"

    def test_demo_pod_is_patched_and_uid_echoed(self):
        start = self.webhook.log_count()
        review = load_review()
        status, body = self.webhook.admit(review)
        self.assertEqual(status, 200)
        self.assertEqual(body["apiVersion"], "admission.k8s.io/v1")
        self.assertEqual(body["kind"], "AdmissionReview")
        self.assertEqual(body["response"]["uid"], review["request"]["uid"])
        self.assertTrue(body["response"]["allowed"])
        patch = decode_patch(body)
        self.assertIsNotNone(patch)
        paths = {(op["op"], op["path"]) for op in patch}
        self.assertIn(("add", "/spec/volumes"), paths)
        self.assertIn(("add", "/spec/containers/0/volumeMounts"), paths)
        env = {op["value"]["name"]: op["value"]["value"] for op in patch
               if op["path"] == "/spec/containers/0/env/-"}
        self.assertEqual(env, {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE":
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
        })
        volume = next(op["value"][0] for op in patch if op["path"] == "/spec/volumes")
        self.assertEqual(volume["name"], "eks-pod-identity-token")
        token = volume["projected"]["sources"][0]["serviceAccountToken"]
        self.assertEqual(token["audience"], "pods.eks.amazonaws.com")
        self.assertTrue(79200 <= token["expirationSeconds"] <= 86400)

        # One log line for this admission, with who and what, without the pod's secrets.
        line = self.webhook.wait_log(lambda l: l.get("msg") == "admission" and l.get("uid") == review["request"]["uid"],
                                     "for the admission", start=start)
        self.assertEqual(line["outcome"], "patched")
        self.assertEqual(line["namespace"], "demo-ns")
        self.assertEqual(line["service_account"], "demo-sa")
        self.assertEqual(line["pod"], "demo-app")
        self.assertEqual(line["containers_patched"], 1)
        self.assertIn("latency_ms", line)
        self.assertNotIn("hunter2-do-not-log", self.webhook.stderr_text())

    def test_pod_without_association_is_allowed_without_patch(self):
        status, body = self.webhook.admit(review_for("other-ns", "other-sa", "uid-no-association"))
        self.assertEqual(status, 200)
        self.assertEqual(body["response"]["uid"], "uid-no-association")
        self.assertTrue(body["response"]["allowed"])
        self.assertNotIn("patch", body["response"])

    def test_content_type_parameters_are_accepted(self):
        status, _, data = self.webhook.request("POST", "/mutate", json.dumps(load_review()).encode(),
                                               {"Content-Type": "Application/JSON; charset=utf-8"})
        self.assertEqual(status, 200, data)

    def test_bad_input_table(self):
        ok = json.dumps(load_review()).encode()
        json_ct = {"Content-Type": "application/json"}
        cases = [
            # name, method, path, body, headers, status, error substring, extra header check
            ("not JSON", "POST", "/mutate", b"this is not json", json_ct, 400, "invalid JSON", None),
            ("JSON, not an object", "POST", "/mutate", b"[1, 2]", json_ct, 400, "must be an AdmissionReview", None),
            ("JSON, not a review", "POST", "/mutate", b'{"hello": "world"}', json_ct, 400, "/apiVersion", None),
            ("review without request", "POST", "/mutate",
             b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', json_ct, 400, "/request", None),
            ("over the size limit", "POST", "/mutate", b" " * (MAX_REQUEST_BYTES + 1), json_ct, 413,
             "exceeds the limit of 3145728 bytes", None),
            ("text/plain", "POST", "/mutate", ok, {"Content-Type": "text/plain"}, 415, "application/json", None),
            ("no content type", "POST", "/mutate", ok, {}, 415, "application/json", None),
            ("GET /mutate", "GET", "/mutate", None, {}, 405, "not allowed", ("allow", "POST")),
            ("PUT /mutate", "PUT", "/mutate", ok, json_ct, 405, "not allowed", ("allow", "POST")),
            ("POST /healthz", "POST", "/healthz", b"{}", json_ct, 405, "not allowed", ("allow", "GET, HEAD")),
            ("unknown path", "GET", "/nope", None, {}, 404, "no such path: /nope", None),
            ("unknown path, POST", "POST", "/mutate/extra", ok, json_ct, 404, "no such path", None),
        ]
        for name, method, path, body, headers, want_status, want_error, want_header in cases:
            with self.subTest(name):
                status, got_headers, data = self.webhook.request(method, path, body, headers)
                self.assertEqual(status, want_status, data[:200])
                self.assertTrue(got_headers.get("content-type", "").startswith("application/json"), got_headers)
                error = json.loads(data)["error"]
                self.assertIn(want_error, error)
                if want_header:
                    self.assertEqual(got_headers.get(want_header[0]), want_header[1])

    def test_chunked_body_over_the_limit_is_refused(self):
        def chunks():
            piece = b" " * 65536
            for _ in range(MAX_REQUEST_BYTES // len(piece) + 2):
                yield piece
        conn = self.webhook.connection()
        try:
            conn.request("POST", "/mutate", body=chunks(), headers={"Content-Type": "application/json"},
                         encode_chunked=True)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 413)
            self.assertIn("exceeds the limit", json.loads(resp.read())["error"])
        except (BrokenPipeError, ConnectionResetError):
            # The server may close before the client finishes sending: also a refusal,
            # but then the response must still have been 413 in the log.
            self.webhook.wait_log(lambda l: l.get("msg") == "admission" and l.get("status") == 413, "a 413")
        finally:
            conn.close()

    def test_keep_alive_connection_survives_refused_requests(self):
        # Every refused body is read, so the next request on the connection parses.
        conn = self.webhook.connection()
        self.addCleanup(conn.close)
        ok = json.dumps(load_review()).encode()
        first_socket = None
        for method, path, body, headers, want in [
            ("POST", "/mutate", b"garbage", {"Content-Type": "application/json"}, 400),
            ("POST", "/mutate", ok, {"Content-Type": "text/plain"}, 415),
            ("PUT", "/mutate", ok, {"Content-Type": "application/json"}, 405),
            ("POST", "/nope", ok, {"Content-Type": "application/json"}, 404),
            ("POST", "/mutate", ok, {"Content-Type": "application/json"}, 200),
            ("GET", "/healthz", None, {}, 200),
        ]:
            status, _, _ = self.webhook.request(method, path, body, headers, conn)
            self.assertEqual(status, want, f"{method} {path}")
            # http.client reconnects silently after a close: compare the socket itself.
            first_socket = first_socket or conn.sock
            self.assertIs(conn.sock, first_socket, f"the connection was closed after {method} {path}")

    def test_tls_1_1_is_refused_and_1_2_accepted(self):
        def handshake(max_version):
            ctx = client_context(self.pki.ca_cert)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = max_version
            # Let this client offer old versions at all; the refusal must be the server's.
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", self.webhook.port), timeout=REQUEST_TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    return tls.version()

        self.assertEqual(handshake(ssl.TLSVersion.TLSv1_2), "TLSv1.2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = ssl.TLSVersion.TLSv1_1
        with self.assertRaises(ssl.SSLError) as raised:
            handshake(old)
        self.assertIn(raised.exception.reason, ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"))

    def test_server_certificate_is_verified(self):
        conn = self.webhook.connection()
        try:
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
            self.assertEqual(conn.sock.getpeercert()["serialNumber"], "1001")
        finally:
            conn.close()
        other = Pki(self.make_tempdir(), name="other-ca")
        untrusted = self.webhook.connection(ca_file=other.ca_cert)
        self.addCleanup(untrusted.close)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.webhook.request("GET", "/healthz", conn=untrusted)

    def test_health_and_readiness(self):
        for path, want in [("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})]:
            status, _, data = self.webhook.request("GET", path)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(data), want)

    def test_metrics(self):
        self.assertEqual(self.webhook.admit(load_review())[0], 200)
        self.assertEqual(self.webhook.request("POST", "/mutate", b"x", {"Content-Type": "text/plain"})[0], 415)
        headers, text = self.webhook.metrics()
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_admission_requests_total",
                                             'outcome="patched"'), 1)
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_admission_requests_total",
                                             'outcome="unsupported_media_type"'), 1)
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_patched_pods_total"), 1)
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_patch_operations_total"), 4)
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_admission_duration_seconds_count"), 2)
        self.assertIsNotNone(metric_value(text, "pod_identity_webhook_admission_duration_seconds_bucket",
                                          'le="+Inf"'))
        self.assertEqual(metric_value(text, "pod_identity_associations_loaded"), 1)
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_http_responses_total", 'code="415"'), 1)
        self.assertEqual(metric_value(text, "pod_identity_webhook_requests_in_flight"), 1)  # this request
        self.assertIn("# TYPE pod_identity_associations_reloads_total counter", text)
        self.assertIn("# TYPE pod_identity_webhook_certificate_reloads_total counter", text)


class ReloadTest(WebhookTestCase):
    """Associations and certificates change on disk while requests flow."""

    def test_association_reload_while_requests_flow(self):
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        cert, key = pki.issue(tmp / "serving", serial=0x1001)
        associations = tmp / "associations.yaml"
        write_atomically(associations, DEMO_ASSOCIATIONS)
        webhook = self.start(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key,
                              "--associations", associations, "--reload-interval", "50ms"], pki.ca_cert)
        late = review_for("late-ns", "late-sa", "uid-late")
        status, body = webhook.admit(late)
        self.assertEqual((status, decode_patch(body)), (200, None))

        reviews = [load_review(), late, review_for("other-ns", "other-sa", "uid-other")]
        with Load(webhook, reviews, threads=4, new_connection_every=5) as load:
            write_atomically(associations, DEMO_ASSOCIATIONS + LATE_ASSOCIATION)
            # The change is visible in the responses themselves.
            wait_until(lambda: decode_patch(webhook.admit(late)[1]) is not None, "late-ns/late-sa to be patched")
            # An invalid file never replaces the last good one.
            write_atomically(associations, "associations: [ {namespace: BAD")
            wait_until(lambda: metric_value(webhook.metrics()[1], "pod_identity_associations_reloads_total",
                                            'result="failure"'), "a failed reload in the metrics")
            self.assertIsNotNone(decode_patch(webhook.admit(late)[1]))
            status, body = webhook.admit(load_review())
            self.assertIsNotNone(decode_patch(body))
        load.assert_no_failures(self)
        text = webhook.metrics()[1]
        self.assertGreaterEqual(metric_value(text, "pod_identity_associations_reloads_total", 'result="success"'), 1)
        self.assertEqual(metric_value(text, "pod_identity_associations_loaded"), 2)
        webhook.wait_log(lambda l: l.get("msg", "").startswith("associations reload failed"), "the failed reload")

    def peer_serial(self, webhook):
        conn = webhook.connection()
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return conn.sock.getpeercert()["serialNumber"]
        finally:
            conn.close()

    def test_certificate_rotation_via_secret_symlink_swap(self):
        # The layout of a mounted Kubernetes Secret: tls.crt -> ..data/tls.crt, and the
        # kubelet swaps ..data to a new directory in one rename.
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        mount = tmp / "secret"
        mount.mkdir()
        pki.issue(mount / "..v1", serial=0x1001)
        os.symlink("..v1", mount / "..data")
        for name in ("tls.crt", "tls.key"):
            os.symlink(f"..data/{name}", mount / name)
        webhook = self.start(["--port", "0", "--tls-cert-file", mount / "tls.crt", "--tls-key-file",
                              mount / "tls.key", "--reload-interval", "50ms"], pki.ca_cert)
        self.assertEqual(self.peer_serial(webhook), "1001")

        # A connection opened before the rotation keeps working after it.
        before = webhook.connection()
        self.addCleanup(before.close)
        self.assertEqual(webhook.admit(load_review(), before)[0], 200)

        with Load(webhook, [load_review()], threads=4, new_connection_every=1) as load:
            pki.issue(mount / "..v2", serial=0x2002)
            os.symlink("..v2", mount / "..data_tmp")
            os.replace(mount / "..data_tmp", mount / "..data")
            wait_until(lambda: self.peer_serial(webhook) == "2002", "new handshakes to present serial 2002")
        load.assert_no_failures(self)

        self.assertEqual(webhook.admit(load_review(), before)[0], 200)
        self.assertEqual(before.sock.getpeercert()["serialNumber"], "1001")
        text = webhook.metrics()[1]
        self.assertGreaterEqual(metric_value(text, "pod_identity_webhook_certificate_reloads_total",
                                             'result="success"'), 1)
        webhook.wait_log(lambda l: l.get("msg") == "certificate reloaded" and l.get("serial") == "2002",
                         "the reload log line")

    def test_certificate_rotation_by_renaming_each_file(self):
        # Files replaced one after the other: between the two renames the pair does not
        # match; the server keeps the old pair until both are new.
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        cert, key = pki.issue(tmp / "live", serial=0x1001)
        webhook = self.start(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key,
                              "--reload-interval", "50ms"], pki.ca_cert)
        new_cert, new_key = pki.issue(tmp / "next", serial=0x3003)
        with Load(webhook, [load_review()], threads=4, new_connection_every=2) as load:
            os.replace(new_cert, cert)
            # Hold the half-rotated state until the server has seen it (the mismatch is
            # reported), then finish the rotation.
            webhook.wait_log(lambda l: l.get("msg", "").startswith("certificate reload failed"),
                             "the mismatched pair to be refused")
            self.assertEqual(self.peer_serial(webhook), "1001")
            os.replace(new_key, key)
            wait_until(lambda: self.peer_serial(webhook) == "3003", "new handshakes to present serial 3003")
        load.assert_no_failures(self)


class ConnectionsTest(WebhookTestCase):
    """A keep-alive connection holds a server thread for its whole life (cpp-httplib).
    Threads start on demand up to --threads, so the idle connections the API server keeps
    open never make a new connection wait for one of them to time out."""

    def start_with(self, *extra):
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        cert, key = pki.issue(tmp / "serving", serial=0x1001)
        # Idle connections are only released after 120 s, far beyond the client timeout.
        return self.start(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key,
                           "--keep-alive-timeout", "120s", *extra], pki.ca_cert)

    def hold_connections(self, webhook, count):
        held = []
        for i in range(count):
            conn = webhook.connection()
            self.addCleanup(conn.close)
            status, _ = webhook.admit(load_review(), conn)
            self.assertEqual(status, 200, f"connection {i + 1}")
            held.append(conn)
        return held

    def test_idle_keep_alive_connections_do_not_starve_a_new_one(self):
        webhook = self.start_with()
        held = self.hold_connections(webhook, 48)
        status, body = webhook.admit(load_review())
        self.assertEqual(status, 200)
        self.assertIsNotNone(decode_patch(body))
        # The held connections are still usable.
        for conn in held[:3]:
            self.assertEqual(webhook.admit(load_review(), conn)[0], 200)
        for conn in held:
            conn.close()
        webhook.signal(signal.SIGTERM)
        self.assertEqual(webhook.wait_exit(), 0)

    def test_beyond_threads_a_connection_waits_and_is_served_when_one_closes(self):
        webhook = self.start_with("--threads", "4")
        held = self.hold_connections(webhook, 4)
        result = {}

        def fifth():
            result["status"] = webhook.admit(load_review())[0]

        waiter = threading.Thread(target=fifth)
        waiter.start()
        held[0].close()
        waiter.join(REQUEST_TIMEOUT + 5)
        self.assertFalse(waiter.is_alive(), "the fifth connection was never served")
        self.assertEqual(result.get("status"), 200)
        for conn in held[1:]:
            conn.close()
        webhook.signal(signal.SIGTERM)
        self.assertEqual(webhook.wait_exit(), 0)


class ShutdownTest(WebhookTestCase):
    def start_default(self):
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        cert, key = pki.issue(tmp / "serving", serial=0x1001)
        return self.start(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key], pki.ca_cert)

    def test_sigterm_finishes_requests_in_flight_and_exits_zero(self):
        webhook = self.start_default()
        body = json.dumps(load_review()).encode()
        half = len(body) // 2
        ctx = client_context(webhook.ca_file)
        slow = []
        for _ in range(3):
            raw = socket.create_connection(("localhost", webhook.port), timeout=REQUEST_TIMEOUT)
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
            self.addCleanup(tls.close)
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:half])
            slow.append(tls)
        # The three handlers are running (waiting for the rest of their bodies); the
        # gauge also counts the /metrics request itself.
        wait_until(lambda: metric_value(webhook.metrics()[1], "pod_identity_webhook_requests_in_flight") == 4,
                   "three requests in flight")

        webhook.signal(signal.SIGTERM)
        webhook.wait_log(lambda l: l.get("msg") == "stopped accepting connections", "'stopped accepting'")
        with self.assertRaises(OSError):
            socket.create_connection(("localhost", webhook.port), timeout=REQUEST_TIMEOUT).close()

        for tls in slow:
            tls.sendall(body[half:])
        for tls in slow:
            resp = http.client.HTTPResponse(tls)
            resp.begin()
            self.assertEqual(resp.status, 200)
            answer = json.loads(resp.read())
            self.assertIsNotNone(decode_patch(answer))
        self.assertEqual(webhook.wait_exit(), 0)
        webhook.wait_log(lambda l: l.get("msg") == "stopped", "'stopped'")

    def test_sigint_exits_zero(self):
        webhook = self.start_default()
        self.assertEqual(webhook.admit(load_review())[0], 200)
        webhook.signal(signal.SIGINT)
        self.assertEqual(webhook.wait_exit(), 0)


class StartupTest(WebhookTestCase):
    def run_binary(self, *args):
        return subprocess.run([WEBHOOK_BIN, *map(str, args)], capture_output=True, text=True, timeout=START_TIMEOUT)

    def test_usage_errors_exit_2_before_listening(self):
        tmp = self.make_tempdir()
        cases = [
            (["--port", "70000"], "--port"),
            (["--no-such-flag"], "no-such-flag"),
            (["--token-expiration", "599"], "--token-expiration: must be at least 600"),
            (["--tls-cert-file", tmp / "x.crt"], "give both or neither"),
            (["--read-timeout", "soon"], "--read-timeout"),
            (["--volume-name", "Not_A_Label"], "--volume-name"),
            (["--credentials-uri", "ftp://x"], "--credentials-uri"),
            (["--log-level", "loud"], "--log-level"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                result = self.run_binary("--port", "0", *args) if args[0] != "--port" else self.run_binary(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(message, result.stderr)
                self.assertNotIn('"listening"', result.stderr)

    def test_help_exits_zero(self):
        result = self.run_binary("--help")
        self.assertEqual(result.returncode, 0)
        for flag in ("--tls-cert-file", "--associations", "--max-request-bytes", "--token-expiration"):
            self.assertIn(flag, result.stdout)

    def test_bad_certificate_or_associations_exit_1(self):
        tmp = self.make_tempdir()
        pki = Pki(tmp / "pki")
        cert, key = pki.issue(tmp / "a", serial=0x1001)
        other_cert, other_key = pki.issue(tmp / "b", serial=0x2002)
        bad_yaml = tmp / "bad.yaml"
        bad_yaml.write_text("associations: [ {namespace: BAD")
        cases = [
            (["--tls-cert-file", tmp / "missing.crt", "--tls-key-file", key], "cannot load the TLS certificate",
             "missing.crt"),
            (["--tls-cert-file", cert, "--tls-key-file", other_key], "cannot load the TLS certificate",
             "does not match"),
            (["--associations", tmp / "missing.yaml"], "cannot load associations", "missing.yaml"),
            (["--associations", bad_yaml], "cannot load associations", "bad.yaml"),
        ]
        for args, msg, detail in cases:
            with self.subTest(args=args):
                result = self.run_binary("--port", "0", *args)
                self.assertEqual(result.returncode, 1, result.stderr)
                errors = [json.loads(l) for l in result.stderr.splitlines() if '"level":"error"' in l]
                self.assertTrue(errors, result.stderr)
                self.assertEqual(errors[-1]["msg"], msg)
                self.assertIn(detail, errors[-1]["error"])
                self.assertNotIn('"listening"', result.stderr)

    def test_port_in_use_exits_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            result = self.run_binary("--port", port, "--bind-address", "127.0.0.1")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot listen on 127.0.0.1 port", result.stderr)

    def test_self_signed_mode_writes_a_ca_that_verifies_the_server(self):
        tmp = self.make_tempdir()
        ca = tmp / "ca.pem"
        webhook = self.start(["--port", "0", "--self-signed-ca-file", ca,
                              "--self-signed-dns-name", "pod-identity-webhook.test.svc"], ca)
        self.assertTrue(ca.read_text().startswith("-----BEGIN CERTIFICATE-----"))
        for host in ("localhost", "127.0.0.1"):
            with self.subTest(host=host):
                conn = webhook.connection(host=host)
                try:
                    status, body = webhook.admit(load_review(), conn=conn)
                finally:
                    conn.close()
                self.assertEqual(status, 200)
                self.assertIsNotNone(decode_patch(body))  # the embedded associations hold demo-ns/demo-sa
        conn = webhook.connection()
        try:
            conn.request("GET", "/readyz")
            self.assertEqual(conn.getresponse().status, 200)
            san = conn.sock.getpeercert()["subjectAltName"]
        finally:
            conn.close()
        self.assertIn(("DNS", "pod-identity-webhook.test.svc"), san)
        self.assertIn(("IP Address", "127.0.0.1"), san)


if __name__ == "__main__":
    unittest.main()
