// Self-test of the test STS (server.mjs): run with `node --test self_test.mjs` (or
// `node self_test.mjs`). Requests are signed with @smithy/signature-v4 and sent with
// fetch, and the AWS SDK's own STS client and client.mjs are run against it, so that the
// server is known to accept what real clients send and to reject what it must.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import http from "node:http";
import { tmpdir } from "node:os";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";
import { STSClient, AssumeRoleCommand, GetCallerIdentityCommand } from "@aws-sdk/client-sts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const AGENT = { accessKeyId: "AKIATESTSTSAGENT0001", secretAccessKey: "testStsAgentSecret/0123456789abcdefghijkl" };
const AGENT_ARN = "arn:aws:iam::111122223333:user/pod-identity-agent";
const ROLE_ARN = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";
const EKS_TAGS = [
  ["eks-cluster-arn", "arn:aws:eks:us-east-1:111122223333:cluster/test"],
  ["eks-cluster-name", "test"],
  ["kubernetes-namespace", "default"],
  ["kubernetes-service-account", "app"],
  ["kubernetes-pod-name", "app-0"],
  ["kubernetes-pod-uid", "0b7b4a56-0a7e-4a39-9d0e-2d8a0c7f7c11"],
];

let server;
let endpoint;
let port;

before(async () => {
  server = spawn(process.execPath, [path.join(HERE, "server.mjs"), "--key", `${AGENT.accessKeyId}=${AGENT.secretAccessKey}=${AGENT_ARN}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  server.stderr.on("data", (d) => { stderr += d; });
  const firstLine = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: server.stdout });
    lines.once("line", resolve);
    server.once("exit", (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  port = JSON.parse(firstLine).port;
  assert.ok(Number.isInteger(port) && port > 0);
  endpoint = `http://127.0.0.1:${port}`;
});

after(() => {
  server?.kill("SIGTERM");
});

beforeEach(async () => {
  const r = await fetch(`${endpoint}/_reset`, { method: "POST" });
  assert.equal(r.status, 200);
});

function form(params) {
  return new URLSearchParams(params).toString();
}

function assumeRoleParams(extra = {}) {
  const params = { Action: "AssumeRole", Version: "2011-06-15", RoleArn: ROLE_ARN, RoleSessionName: "eks-test-app-0-abcdef", DurationSeconds: "900" };
  EKS_TAGS.forEach(([k, v], i) => {
    params[`Tags.member.${i + 1}.Key`] = k;
    params[`Tags.member.${i + 1}.Value`] = v;
    params[`TransitiveTagKeys.member.${i + 1}`] = k;
  });
  return { ...params, ...extra };
}

// Signs with the reference signer and sends; returns { status, text, headers }.
async function signedPost({ path: reqPath = "/", body, contentType = "application/x-www-form-urlencoded; charset=utf-8", credentials = AGENT, service = "sts", signingDate = new Date(), tamper }) {
  const signer = new SignatureV4({ credentials, region: "us-east-1", service, sha256: Sha256, applyChecksum: false });
  const request = {
    method: "POST",
    protocol: "http:",
    hostname: "127.0.0.1",
    port,
    path: reqPath,
    query: {},
    headers: { host: `127.0.0.1:${port}`, "content-type": contentType },
    body,
  };
  const signed = await signer.sign(request, { signingDate });
  const headers = { ...signed.headers };
  delete headers.host;
  const sentBody = tamper ? tamper(body) : body;
  const response = await fetch(`${endpoint}${reqPath}`, { method: "POST", headers, body: sentBody });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

function xmlValue(xml, tag) {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? m[1] : null;
}

async function recorded() {
  return (await fetch(`${endpoint}/_requests`)).json();
}

async function setFaults(faults) {
  const r = await fetch(`${endpoint}/_faults`, { method: "POST", body: JSON.stringify(faults) });
  assert.equal(r.status, 200, await r.text());
}

function assertStsError(response, status, code) {
  assert.equal(response.status, status, response.text);
  assert.match(response.text, /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">/);
  assert.equal(xmlValue(response.text, "Code"), code, response.text);
  assert.equal(xmlValue(response.text, "Type"), status >= 500 ? "Receiver" : "Sender");
  assert.ok(xmlValue(response.text, "Message"));
  assert.match(xmlValue(response.text, "RequestId"), /^[0-9a-f-]{36}$/);
}

async function assumeRoleCredentials(extra) {
  const r = await signedPost({ body: form(assumeRoleParams(extra)) });
  assert.equal(r.status, 200, r.text);
  return {
    accessKeyId: xmlValue(r.text, "AccessKeyId"),
    secretAccessKey: xmlValue(r.text, "SecretAccessKey"),
    sessionToken: xmlValue(r.text, "SessionToken"),
    expiration: xmlValue(r.text, "Expiration"),
    text: r.text,
  };
}

test("AssumeRole signed with the configured key returns STS credentials and is recorded", async () => {
  const before = Date.now();
  const creds = await assumeRoleCredentials();
  assert.match(creds.accessKeyId, /^ASIA[A-Z2-7]{16}$/);
  assert.equal(creds.secretAccessKey.length, 40);
  assert.ok(creds.sessionToken.length > 100);
  assert.match(creds.expiration, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  const lifetime = (Date.parse(creds.expiration) - before) / 1000;
  assert.ok(lifetime > 895 && lifetime <= 901, `lifetime ${lifetime}`);
  assert.equal(xmlValue(creds.text, "Arn"), "arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-test-app-0-abcdef");
  assert.match(creds.text, /<PackedPolicySize>\d+<\/PackedPolicySize>/);

  const [call] = await recorded();
  assert.equal(call.action, "AssumeRole");
  assert.equal(call.status, 200);
  assert.equal(call.accessKeyId, AGENT.accessKeyId);
  assert.equal(call.callerArn, AGENT_ARN);
  assert.equal(call.region, "us-east-1");
  assert.equal(call.issuedAccessKeyId, creds.accessKeyId);
  assert.equal(call.parsed.roleArn, ROLE_ARN);
  assert.equal(call.parsed.roleSessionName, "eks-test-app-0-abcdef");
  assert.equal(call.parsed.durationSeconds, 900);
  assert.deepEqual(call.parsed.tags, EKS_TAGS.map(([key, value]) => ({ key, value })));
  assert.deepEqual(call.parsed.transitiveTagKeys, EKS_TAGS.map(([k]) => k));
  assert.equal(call.parsed.policy, null);
  assert.equal(call.headers.authorization, undefined, "the Authorization header is not recorded");
});

test("a wrong secret, a tampered body, an unknown key and an old date are rejected", async () => {
  const wrongSecret = await signedPost({ body: form(assumeRoleParams()), credentials: { ...AGENT, secretAccessKey: "x".repeat(40) } });
  assertStsError(wrongSecret, 403, "SignatureDoesNotMatch");

  const tampered = await signedPost({ body: form(assumeRoleParams()), tamper: (b) => b.replace("DurationSeconds=900", "DurationSeconds=901") });
  assertStsError(tampered, 403, "SignatureDoesNotMatch");

  const unknownKey = await signedPost({ body: form(assumeRoleParams()), credentials: { accessKeyId: "AKIAUNKNOWNUNKNOWN00", secretAccessKey: AGENT.secretAccessKey } });
  assertStsError(unknownKey, 403, "InvalidClientTokenId");

  const old = await signedPost({ body: form(assumeRoleParams()), signingDate: new Date(Date.now() - 20 * 60 * 1000) });
  assertStsError(old, 403, "SignatureDoesNotMatch");
  assert.match(xmlValue(old.text, "Message"), /Signature expired/);

  const unsigned = await fetch(`${endpoint}/`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form(assumeRoleParams()) });
  assertStsError({ status: unsigned.status, text: await unsigned.text() }, 403, "MissingAuthenticationToken");

  const calls = await recorded();
  assert.equal(calls.length, 5);
  assert.ok(calls.every((c) => c.status !== 200 && c.issuedAccessKeyId === undefined));
  assert.match(calls[0].error.expectedAuthorization, /^AWS4-HMAC-SHA256 Credential=AKIATESTSTSAGENT0001\//);
});

test("AssumeRole parameters are validated as STS does", async () => {
  const cases = [
    [{ RoleSessionName: "has space" }, "ValidationError"],
    [{ RoleSessionName: "x" }, "ValidationError"],
    [{ RoleSessionName: "a".repeat(65) }, "ValidationError"],
    [{ RoleArn: "arn:aws:iam::1111:role/short-account" }, "ValidationError"],
    [{ RoleArn: "arn:aws:iam::111122223333:user/not-a-role" }, "ValidationError"],
    [{ DurationSeconds: "899" }, "ValidationError"],
    [{ DurationSeconds: "43201" }, "ValidationError"],
    [{ Policy: "{not json" }, "MalformedPolicyDocument"],
    [{ "Tags.member.7.Key": "Kubernetes-Namespace", "Tags.member.7.Value": "dup" }, "InvalidParameterValue"],
    [{ "Tags.member.7.Key": "bad*key", "Tags.member.7.Value": "v" }, "ValidationError"],
    [{ "Tags.member.9.Key": "gap", "Tags.member.9.Value": "v" }, "InvalidParameterValue"],
    [{ "TransitiveTagKeys.member.7": "not-a-tag" }, "InvalidParameterValue"],
  ];
  for (const [extra, code] of cases) {
    const r = await signedPost({ body: form(assumeRoleParams(extra)) });
    assertStsError(r, 400, code);
  }
  const tooMany = {};
  for (let i = 7; i <= 51; i++) {
    tooMany[`Tags.member.${i}.Key`] = `k${i}`;
    tooMany[`Tags.member.${i}.Value`] = "v";
  }
  assertStsError(await signedPost({ body: form(assumeRoleParams(tooMany)) }), 400, "ValidationError");

  const policy = JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "*" }] });
  const ok = await signedPost({ body: form(assumeRoleParams({ Policy: policy })) });
  assert.equal(ok.status, 200, ok.text);
  const calls = await recorded();
  assert.equal(calls.at(-1).parsed.policy, policy);
});

test("the AWS SDK's STS client is accepted; GetCallerIdentity works with issued credentials", async () => {
  const sts = new STSClient({ endpoint, region: "eu-west-1", credentials: AGENT, maxAttempts: 1 });
  const assumed = await sts.send(new AssumeRoleCommand({
    RoleArn: ROLE_ARN,
    RoleSessionName: "eks-sdk-session",
    Tags: EKS_TAGS.map(([Key, Value]) => ({ Key, Value })),
    TransitiveTagKeys: EKS_TAGS.map(([k]) => k),
    Policy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] }),
  }));
  assert.ok(assumed.Credentials.Expiration instanceof Date);
  assert.equal(assumed.AssumedRoleUser.Arn, "arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-sdk-session");

  const temp = {
    accessKeyId: assumed.Credentials.AccessKeyId,
    secretAccessKey: assumed.Credentials.SecretAccessKey,
    sessionToken: assumed.Credentials.SessionToken,
  };
  const asRole = new STSClient({ endpoint, region: "us-east-1", credentials: temp, maxAttempts: 1 });
  const identity = await asRole.send(new GetCallerIdentityCommand({}));
  assert.equal(identity.Arn, "arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-sdk-session");
  assert.equal(identity.Account, "111122223333");
  assert.match(identity.UserId, /^AROA[0-9A-F]{17}:eks-sdk-session$/);

  // The same secret with another session token is not the issued credential.
  const wrongToken = new STSClient({ endpoint, region: "us-east-1", credentials: { ...temp, sessionToken: "forged" }, maxAttempts: 1 });
  await assert.rejects(wrongToken.send(new GetCallerIdentityCommand({})), (e) => e.name === "InvalidClientTokenId" && e.$metadata.httpStatusCode === 403);

  // Long-term keys identify the configured user.
  const self = await sts.send(new GetCallerIdentityCommand({}));
  assert.equal(self.Arn, AGENT_ARN);

  const calls = await recorded();
  assert.equal(calls[0].region, "eu-west-1");
  assert.equal(calls[1].action, "GetCallerIdentity");
  assert.equal(calls[1].accessKeyId, temp.accessKeyId);
});

test("client.mjs resolves credentials through the SDK's default chain and prints no secret", async () => {
  const creds = await assumeRoleCredentials();
  const env = {
    PATH: process.env.PATH,
    HOME: "/nonexistent",
    STS_ENDPOINT: endpoint,
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_SESSION_TOKEN: creds.sessionToken,
    AWS_REGION: "us-east-1",
  };
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(HERE, "client.mjs")], { env, timeout: 30000 }, (error, out, err) => {
      if (error) reject(new Error(`${error.message}\n${err}`));
      else resolve({ stdout: out });
    });
  });
  const printed = JSON.parse(stdout);
  assert.deepEqual(printed, {
    Account: "111122223333",
    Arn: "arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-test-app-0-abcdef",
    AccessKeyId: creds.accessKeyId,
  });
  assert.ok(!stdout.includes(creds.secretAccessKey) && !stdout.includes(creds.sessionToken));
});

test("client.mjs uses container credentials (what the agent serves) when the pod env says so", async () => {
  const creds = await assumeRoleCredentials();
  const dir = await mkdtemp(path.join(tmpdir(), "test-sts-"));
  const tokenFile = path.join(dir, "token");
  await writeFile(tokenFile, "header.payload.signature"); // no trailing newline, as kubelet writes it
  const seenAuthorization = [];
  const agent = http.createServer((req, res) => {
    seenAuthorization.push(req.headers.authorization);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ AccessKeyId: creds.accessKeyId, SecretAccessKey: creds.secretAccessKey, Token: creds.sessionToken, AccountId: "111122223333", Expiration: creds.expiration }));
  });
  await new Promise((resolve) => agent.listen(0, "127.0.0.1", resolve));
  try {
    const env = {
      PATH: process.env.PATH,
      HOME: "/nonexistent",
      STS_ENDPOINT: endpoint,
      AWS_REGION: "us-east-1",
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${agent.address().port}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
    };
    const stdout = await new Promise((resolve, reject) => {
      execFile(process.execPath, [path.join(HERE, "client.mjs")], { env, timeout: 30000 }, (error, out, err) => {
        if (error) reject(new Error(`${error.message}\n${err}`));
        else resolve(out);
      });
    });
    assert.equal(JSON.parse(stdout).AccessKeyId, creds.accessKeyId);
    assert.ok(seenAuthorization.length >= 1);
    assert.ok(seenAuthorization.every((a) => a === "header.payload.signature"), JSON.stringify(seenAuthorization));
  } finally {
    agent.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("role chaining: inherited transitive tags cannot be overridden, one hour at most, expiry enforced", async () => {
  const first = await assumeRoleCredentials();
  const target = "arn:aws:iam::444455556666:role/target";
  const chained = await signedPost({ body: form({ Action: "AssumeRole", Version: "2011-06-15", RoleArn: target, RoleSessionName: "hop2" }), credentials: first });
  assert.equal(chained.status, 200, chained.text);
  assert.equal(xmlValue(chained.text, "Arn"), "arn:aws:sts::444455556666:assumed-role/target/hop2");
  const calls = await recorded();
  assert.equal(calls.at(-1).callerArn, "arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-test-app-0-abcdef");
  assert.deepEqual(calls.at(-1).inheritedTransitiveTags, EKS_TAGS.map(([key, value]) => ({ key, value })));

  const conflicting = await signedPost({ body: form({ Action: "AssumeRole", Version: "2011-06-15", RoleArn: target, RoleSessionName: "hop2", "Tags.member.1.Key": "kubernetes-namespace", "Tags.member.1.Value": "other" }), credentials: first });
  assertStsError(conflicting, 400, "InvalidParameterValue");
  const tooLong = await signedPost({ body: form({ Action: "AssumeRole", Version: "2011-06-15", RoleArn: target, RoleSessionName: "hop2", DurationSeconds: "7200" }), credentials: first });
  assertStsError(tooLong, 400, "ValidationError");

  await setFaults({ credentialLifetimeSeconds: 0 });
  const expired = await assumeRoleCredentials();
  const useExpired = await signedPost({ body: form({ Action: "GetCallerIdentity", Version: "2011-06-15" }), credentials: expired });
  assertStsError(useExpired, 400, "ExpiredToken");
});

test("faults: throttling, 5xx, access denied, credential lifetime, delay", async () => {
  await setFaults({ throttleNext: 2, errorNext: 1 });
  assertStsError(await signedPost({ body: form(assumeRoleParams()) }), 400, "Throttling");
  assertStsError(await signedPost({ body: form(assumeRoleParams()) }), 400, "Throttling");
  assertStsError(await signedPost({ body: form(assumeRoleParams()) }), 500, "InternalFailure");
  assert.equal((await signedPost({ body: form(assumeRoleParams()) })).status, 200);

  await setFaults({ denyRoleArns: [ROLE_ARN] });
  const denied = await signedPost({ body: form(assumeRoleParams()) });
  assertStsError(denied, 403, "AccessDenied");
  assert.match(xmlValue(denied.text, "Message"), /is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role\/eks-pod-s3-readonly-access/);

  await setFaults({ denyRoleArns: [], credentialLifetimeSeconds: 120 });
  const start = Date.now();
  const shortLived = await assumeRoleCredentials();
  const lifetime = (Date.parse(shortLived.expiration) - start) / 1000;
  assert.ok(lifetime > 115 && lifetime <= 121, `lifetime ${lifetime}`);

  await setFaults({ delayMs: 300 });
  const t0 = Date.now();
  assert.equal((await signedPost({ body: form(assumeRoleParams()) })).status, 200);
  assert.ok(Date.now() - t0 >= 290, "answer was delayed");

  for (const bad of [{ noSuchFault: 1 }, { throttleNext: -1 }, { delayMs: "10" }, { denyRoleArns: "arn" }]) {
    const r = await fetch(`${endpoint}/_faults`, { method: "POST", body: JSON.stringify(bad) });
    assert.equal(r.status, 400, JSON.stringify(bad));
  }

  const statuses = (await recorded()).map((c) => c.status);
  assert.deepEqual(statuses, [400, 400, 500, 200, 403, 200, 200]);
});

function fakeToken() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "RS256", kid: "k1" })}.${b64({ aud: ["pods.eks.amazonaws.com"], "kubernetes.io": { namespace: "team-a", serviceaccount: { name: "reader" }, pod: { name: "reader-0" } } })}.c2ln`;
}

test("EKS Auth AssumeRoleForPodIdentity: signed with service eks-auth, JSON in and out, restJson errors", async () => {
  const reqPath = "/clusters/test-cluster/assume-role-for-pod-identity";
  const token = fakeToken();
  const before = Date.now() / 1000;
  const ok = await signedPost({ path: reqPath, service: "eks-auth", contentType: "application/json", body: JSON.stringify({ token }) });
  assert.equal(ok.status, 200, ok.text);
  const answer = JSON.parse(ok.text);
  assert.deepEqual(answer.subject, { namespace: "team-a", serviceAccount: "reader" });
  assert.equal(answer.audience, "pods.eks.amazonaws.com");
  assert.equal(typeof answer.credentials.expiration, "number");
  assert.ok(answer.credentials.expiration > before + 3600);
  assert.match(answer.credentials.accessKeyId, /^ASIA/);
  assert.match(answer.assumedRoleUser.arn, /^arn:aws:sts::111122223333:assumed-role\/eks-pod-s3-readonly-access\/eks-test-cluster-reader-0-/);
  assert.ok(answer.podIdentityAssociation.associationArn.startsWith("arn:aws:eks:"));

  // Signed for the wrong service.
  const wrongService = await signedPost({ path: reqPath, service: "sts", contentType: "application/json", body: JSON.stringify({ token }) });
  assert.equal(wrongService.status, 403);
  assert.equal(JSON.parse(wrongService.text).__type, "SignatureDoesNotMatch");

  const empty = await signedPost({ path: reqPath, service: "eks-auth", contentType: "application/json", body: JSON.stringify({ token: "" }) });
  assert.equal(empty.status, 400);
  assert.equal(JSON.parse(empty.text).__type, "InvalidParameterException");
  assert.equal(empty.headers.get("x-amzn-errortype"), "InvalidParameterException");

  await setFaults({ throttleNext: 1 });
  const throttled = await signedPost({ path: reqPath, service: "eks-auth", contentType: "application/json", body: JSON.stringify({ token }) });
  assert.equal(throttled.status, 429);
  assert.equal(JSON.parse(throttled.text).__type, "ThrottlingException");

  await setFaults({ denyRoleArns: [ROLE_ARN] });
  const denied = await signedPost({ path: reqPath, service: "eks-auth", contentType: "application/json", body: JSON.stringify({ token }) });
  assert.equal(JSON.parse(denied.text).__type, "AccessDeniedException");

  const calls = await recorded();
  assert.equal(calls[0].kind, "eks-auth");
  assert.equal(calls[0].cluster, "test-cluster");
  assert.equal(calls[0].parsed.token, token);
  assert.equal(calls[0].issuedAccessKeyId, answer.credentials.accessKeyId);
});
