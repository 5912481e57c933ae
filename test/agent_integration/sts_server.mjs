// A test STS (and EKS Auth) endpoint for the agent's integration tests.
//
// Why it exists: radosgw (the real STS that runs here) verifies SigV4 but ignores
// session tags, has no GetCallerIdentity and cannot inject faults. This server checks
// what radosgw cannot: it verifies every request's SigV4 signature by re-signing it with
// the AWS SDK for JavaScript's own signer (@smithy/signature-v4, code we did not write),
// validates AssumeRole's RoleArn, RoleSessionName, Tags, TransitiveTagKeys, Policy and
// DurationSeconds as STS documents them, answers with STS's XML documents, and can be
// told to throttle, fail with 5xx, answer slowly or deny a role.
//
// Environment: STS_ACCESS_KEYS="id:secret,..." (the callers allowed to sign; default
// AKIDPODIDENTITYAGENT:agent-secret-key-for-tests), STS_HOST (127.0.0.1), STS_PORT (0).
// On start it prints one line {"port": N}.
// Control (unsigned, for tests): GET /_requests, POST /_reset, POST /_faults with JSON
// {throttle: n, fail: n, delayMs: ms, denyRoles: [arn], lifetimeSeconds: s}.
import http from "node:http";
import crypto from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";

const ACCOUNT_OF_CALLERS = "111122223333";
const callers = new Map();  // access key id -> {secret, sessionToken?, arn, account}
for (const pair of (process.env.STS_ACCESS_KEYS ?? "AKIDPODIDENTITYAGENT:agent-secret-key-for-tests").split(",")) {
  const [id, secret] = pair.split(":");
  if (id && secret) callers.set(id, { secret, arn: `arn:aws:iam::${ACCOUNT_OF_CALLERS}:user/pod-identity-agent`, account: ACCOUNT_OF_CALLERS });
}

let recorded = [];
let faults = {};
const resetFaults = () => { faults = { throttle: 0, fail: 0, delayMs: 0, denyRoles: [], lifetimeSeconds: 3600 }; };
resetFaults();

const xmlEscape = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const requestId = () => crypto.randomUUID();

function stsError(res, status, code, message, type = "Sender") {
  res.writeHead(status, { "Content-Type": "text/xml" });
  res.end(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>${type}</Type>` +
          `<Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error>` +
          `<RequestId>${requestId()}</RequestId></ErrorResponse>`);
}

function jsonError(res, status, type, message) {
  res.writeHead(status, { "Content-Type": "application/json", "x-amzn-ErrorType": type });
  res.end(JSON.stringify({ __type: type, message }));
}

// Re-signs the request with @smithy/signature-v4 over exactly the headers the client
// signed and compares signatures. Returns {caller, scope} or {error}.
async function verifySigV4(req, body, url) {
  const auth = req.headers["authorization"] ?? "";
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!match) return { error: ["IncompleteSignature", "Authorization header is not a SigV4 signature"] };
  const [, accessKeyId, day, region, service, signedHeaders, signature] = match;
  const caller = callers.get(accessKeyId);
  if (!caller) return { error: ["InvalidClientTokenId", "The security token included in the request is invalid."] };
  if (caller.sessionToken && req.headers["x-amz-security-token"] !== caller.sessionToken) {
    return { error: ["InvalidClientTokenId", "The security token included in the request is invalid (session token)."] };
  }
  const amzDate = req.headers["x-amz-date"];
  if (!amzDate || !amzDate.startsWith(day)) return { error: ["IncompleteSignature", "X-Amz-Date missing or not matching the scope"] };
  const signingDate = new Date(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
  if (Math.abs(Date.now() - signingDate.getTime()) > 15 * 60 * 1000) {
    return { error: ["RequestExpired", "Request has expired (more than 15 minutes of clock skew)"] };
  }
  const headers = {};
  for (const name of signedHeaders.split(";")) {
    const value = req.headers[name];
    if (value === undefined) return { error: ["IncompleteSignature", `signed header ${name} is missing`] };
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const query = {};
  for (const [k, v] of url.searchParams) query[k] = v;
  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey: caller.secret, sessionToken: caller.sessionToken },
    region, service, sha256: Sha256, applyChecksum: false,
  });
  const [host, port] = (req.headers.host ?? "").split(":");
  const signed = await signer.sign({
    method: req.method, protocol: "http:", hostname: host, port: port ? Number(port) : undefined,
    path: url.pathname, query, headers, body,
  }, { signingDate, unsignableHeaders: new Set(), signableHeaders: new Set(signedHeaders.split(";")) });
  const expected = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization ?? signed.headers.Authorization)[1];
  if (expected !== signature) {
    return { error: ["SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."] };
  }
  return { caller: { accessKeyId, ...caller }, scope: { region, service } };
}

const ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;

function parseMembers(params, prefix, fields) {
  const out = [];
  for (let i = 1; ; i++) {
    if (fields) {
      const item = {};
      for (const f of fields) {
        const v = params.get(`${prefix}.member.${i}.${f}`);
        if (v !== null) item[f] = v;
      }
      if (Object.keys(item).length === 0) break;
      out.push(item);
    } else {
      const v = params.get(`${prefix}.member.${i}`);
      if (v === null) break;
      out.push(v);
    }
  }
  return out;
}

function validateAssumeRole(p) {
  if (!ROLE_ARN.test(p.RoleArn ?? "")) return `RoleArn ${p.RoleArn} is not a valid IAM role ARN`;
  if (!SESSION_NAME.test(p.RoleSessionName ?? "")) return `RoleSessionName ${p.RoleSessionName} must match [\\w+=,.@-]{2,64}`;
  if (p.DurationSeconds !== undefined && !(p.DurationSeconds >= 900 && p.DurationSeconds <= 43200)) return "DurationSeconds must be within 900..43200";
  if (p.Tags.length > 50) return "at most 50 session tags";
  const keys = new Set();
  for (const tag of p.Tags) {
    if (!tag.Key || tag.Key.length > 128 || !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$/u.test(tag.Key)) return `tag key ${tag.Key} is invalid`;
    if ((tag.Value ?? "").length > 256) return `tag value of ${tag.Key} is longer than 256`;
    const lower = tag.Key.toLowerCase();
    if (keys.has(lower)) return `duplicate tag key ${tag.Key} (keys are case-insensitive)`;
    keys.add(lower);
  }
  for (const key of p.TransitiveTagKeys) if (!keys.has(key.toLowerCase())) return `transitive tag key ${key} is not a session tag`;
  if (p.Policy !== undefined) {
    if (p.Policy.length > 2048) return "Policy is longer than 2048 characters";
    try { JSON.parse(p.Policy); } catch { return "Policy is not valid JSON"; }
  }
  return null;
}

function issueCredentials(owner) {
  const accessKeyId = "ASIA" + crypto.randomBytes(8).toString("hex").toUpperCase();
  const secret = crypto.randomBytes(30).toString("base64");
  const sessionToken = "IQoJb3JpZ2luX2VjE" + crypto.randomBytes(48).toString("base64");
  const expiration = new Date(Date.now() + faults.lifetimeSeconds * 1000);
  callers.set(accessKeyId, { secret, sessionToken, ...owner });
  return { accessKeyId, secret, sessionToken, expiration };
}

async function handle(req, res, body) {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/_requests" && req.method === "GET") {
    res.writeHead(200, { "Content-Type": "application/json" });
    return res.end(JSON.stringify(recorded));
  }
  if (url.pathname === "/_reset" && req.method === "POST") {
    recorded = []; resetFaults();
    res.writeHead(204); return res.end();
  }
  if (url.pathname === "/_faults" && req.method === "POST") {
    Object.assign(faults, JSON.parse(body || "{}"));
    res.writeHead(204); return res.end();
  }

  const eksAuth = /^\/clusters\/([^/]+)\/assume-role-for-pod-identity$/.exec(url.pathname);
  const verified = await verifySigV4(req, body, url);
  const record = { path: url.pathname, accessKeyId: verified.caller?.accessKeyId, service: verified.scope?.service,
                   signatureValid: !verified.error, time: new Date().toISOString() };
  if (eksAuth) {
    record.action = "AssumeRoleForPodIdentity";
    record.cluster = decodeURIComponent(eksAuth[1]);
    recorded.push(record);
    if (verified.error) return jsonError(res, 403, "AccessDeniedException", verified.error[1]);
    if (verified.scope.service !== "eks-auth") return jsonError(res, 403, "AccessDeniedException", "wrong signing service");
    let token;
    try { token = JSON.parse(body).token; } catch { return jsonError(res, 400, "InvalidRequestException", "body is not JSON"); }
    if (!token) return jsonError(res, 400, "InvalidRequestException", "token is required");
    record.tokenLength = token.length;
    const roleArn = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";
    const creds = issueCredentials({ arn: `arn:aws:sts::111122223333:assumed-role/eks-pod-s3-readonly-access/eks-${record.cluster}`, account: "111122223333" });
    res.writeHead(200, { "Content-Type": "application/json" });
    return res.end(JSON.stringify({
      assumedRoleUser: { arn: callers.get(creds.accessKeyId).arn, assumeRoleId: "AROAEXAMPLE:eks" },
      audience: "pods.eks.amazonaws.com",
      credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secret, sessionToken: creds.sessionToken,
                     expiration: Math.floor(creds.expiration.getTime() / 1000) },
      podIdentityAssociation: { associationArn: `arn:aws:eks:us-east-1:111122223333:podidentityassociation/${record.cluster}/a-1`, associationId: "a-1" },
      subject: { namespace: "demo-ns", serviceAccount: "demo-sa" }, roleArn,
    }));
  }

  const params = new URLSearchParams(req.method === "POST" ? body : url.search);
  record.action = params.get("Action");
  if (record.action === "AssumeRole") {
    record.params = {
      RoleArn: params.get("RoleArn") ?? undefined,
      RoleSessionName: params.get("RoleSessionName") ?? undefined,
      DurationSeconds: params.get("DurationSeconds") ? Number(params.get("DurationSeconds")) : undefined,
      Policy: params.get("Policy") ?? undefined,
      Tags: parseMembers(params, "Tags", ["Key", "Value"]),
      TransitiveTagKeys: parseMembers(params, "TransitiveTagKeys"),
    };
  }
  recorded.push(record);
  if (verified.error) return stsError(res, 403, verified.error[0], verified.error[1]);
  if (params.get("Version") !== "2011-06-15") return stsError(res, 400, "InvalidAction", "Version must be 2011-06-15");
  if (faults.delayMs > 0) await new Promise((r) => setTimeout(r, faults.delayMs));
  if (faults.throttle > 0) { faults.throttle--; return stsError(res, 400, "Throttling", "Rate exceeded"); }
  if (faults.fail > 0) { faults.fail--; return stsError(res, 500, "InternalFailure", "injected failure", "Receiver"); }

  if (record.action === "GetCallerIdentity") {
    const c = verified.caller;
    res.writeHead(200, { "Content-Type": "text/xml" });
    return res.end(`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>` +
                   `<Arn>${xmlEscape(c.arn)}</Arn><UserId>${xmlEscape(c.accessKeyId)}</UserId><Account>${c.account}</Account>` +
                   `</GetCallerIdentityResult><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`);
  }
  if (record.action !== "AssumeRole") return stsError(res, 400, "InvalidAction", `unsupported action ${record.action}`);
  if (verified.scope.service !== "sts") return stsError(res, 403, "SignatureDoesNotMatch", "Credential should be scoped to service sts");
  const problem = validateAssumeRole(record.params);
  if (problem) return stsError(res, 400, "ValidationError", problem);
  if (faults.denyRoles.includes(record.params.RoleArn)) {
    return stsError(res, 403, "AccessDenied", `User: ${verified.caller.arn} is not authorized to perform: sts:AssumeRole on resource: ${record.params.RoleArn}`);
  }
  const [, , account, roleName] = ROLE_ARN.exec(record.params.RoleArn);
  const assumedArn = `arn:aws:sts::${account}:assumed-role/${roleName}/${record.params.RoleSessionName}`;
  const creds = issueCredentials({ arn: assumedArn, account });
  record.issuedAccessKeyId = creds.accessKeyId;
  res.writeHead(200, { "Content-Type": "text/xml" });
  res.end(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
          `<AssumedRoleUser><AssumedRoleId>AROA3XFRBF535PLBIFPI4:${xmlEscape(record.params.RoleSessionName)}</AssumedRoleId>` +
          `<Arn>${xmlEscape(assumedArn)}</Arn></AssumedRoleUser>` +
          `<Credentials><AccessKeyId>${creds.accessKeyId}</AccessKeyId><SecretAccessKey>${xmlEscape(creds.secret)}</SecretAccessKey>` +
          `<SessionToken>${xmlEscape(creds.sessionToken)}</SessionToken><Expiration>${creds.expiration.toISOString().replace(/\.\d+Z$/, "Z")}</Expiration></Credentials>` +
          `<PackedPolicySize>${record.params.Tags.length * 2}</PackedPolicySize></AssumeRoleResult>` +
          `<ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></AssumeRoleResponse>`);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    handle(req, res, Buffer.concat(chunks).toString("utf8")).catch((error) => {
      res.writeHead(500, { "Content-Type": "text/plain" });
      res.end(`test STS error: ${error.message}`);
    });
  });
});
server.keepAliveTimeout = 5000;
server.listen(Number(process.env.STS_PORT ?? 0), process.env.STS_HOST ?? "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
