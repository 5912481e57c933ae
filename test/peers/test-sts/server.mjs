// A test STS (and EKS Auth) endpoint for the agent's integration tests.
//
// Why it exists: the real STS we can run here (Ceph's radosgw) verifies SigV4 and
// issues working credentials, but it silently ignores session tags, answers errors in
// S3's format and cannot be made to fail on demand. This server covers the rest:
//  - it verifies every request's SigV4 signature with @smithy/signature-v4 (the AWS SDK
//    for JavaScript's signer, an implementation we did not write): the request is signed
//    again with the same X-Amz-Date, scope and signed headers and the Authorization
//    headers must agree byte for byte;
//  - it checks AssumeRole's RoleArn, RoleSessionName, DurationSeconds, Policy, Tags and
//    TransitiveTagKeys the way STS documents them, and records every call (GET
//    /_requests) so that tests can assert what the agent sent;
//  - it answers with STS's XML documents (success and ErrorResponse) and EKS Auth's
//    JSON, and injects faults on request (POST /_faults): throttling, 5xx, slow
//    answers, access denied for a role, short-lived credentials.
// It also answers GetCallerIdentity signed with the temporary credentials it issued, so
// the AWS SDK can prove that credentials handed out by the agent work.
//
// Usage: node server.mjs [--key AKID=SECRET[=PRINCIPAL_ARN]]... [--port N] [--host ADDR]
//   (or TEST_STS_KEYS="AKID=SECRET[=ARN],..."). Listens on 127.0.0.1 (port 0 = any free
//   port) and prints one JSON line {"port":N} on stdout when ready; logs go to stderr.
// Control routes (no signature): GET /_requests, POST /_reset, GET|POST /_faults.
// Fault fields (POST merges; POST /_reset clears them and the records). They apply
// after the signature was verified, so a bad signature is always reported as such:
//   throttleNext N     the next N requests -> STS 400 Throttling / EKS Auth 429
//                      ThrottlingException
//   errorNext N        the next N -> 500 InternalFailure / InternalServerException
//   delayMs N          every answer waits this long
//   denyRoleArns [..]  AssumeRole to these -> 403 AccessDenied (EKS Auth: 400
//                      AccessDeniedException when eksAuthRoleArn is listed)
//   credentialLifetimeSeconds N   overrides the lifetime of issued credentials (0 =
//                      already expired)
//   eksAuthRoleArn     the role EKS Auth pretends the pod's association names
// Each record in /_requests: seq, time, requestId, kind (sts|eks-auth), method, path,
// headers (without Authorization and X-Amz-Security-Token), action, params, accessKeyId,
// region, callerArn, parsed (validated parameters), status, error {code, message[,
// expectedAuthorization]}, issuedAccessKeyId, expiration, inheritedTransitiveTags.
import http from "node:http";
import crypto from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";

const STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/";
const MAX_BODY_BYTES = 64 * 1024;
// STS rejects requests whose X-Amz-Date is more than 15 minutes off.
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
const DEFAULT_PRINCIPAL_ACCOUNT = "111122223333";
const DEFAULT_EKS_AUTH_ROLE_ARN = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";

// ---------------------------------------------------------------- configuration

function parseKeySpec(spec) {
  const [accessKeyId, secretAccessKey, arn] = spec.split("=");
  if (!accessKeyId || !secretAccessKey) throw new Error(`bad key spec '${spec}': want AKID=SECRET[=ARN]`);
  return {
    accessKeyId,
    secretAccessKey,
    arn: arn || `arn:aws:iam::${DEFAULT_PRINCIPAL_ACCOUNT}:user/${accessKeyId.toLowerCase()}`,
  };
}

function parseArgs(argv) {
  const config = { port: 0, keys: [] };
  for (const spec of (process.env.TEST_STS_KEYS || "").split(",").filter(Boolean)) {
    config.keys.push(parseKeySpec(spec));
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--key") config.keys.push(parseKeySpec(argv[++i] ?? ""));
    else if (arg === "--port") config.port = Number(argv[++i]);
    else if (arg === "--host") config.host = argv[++i];
    else throw new Error(`unknown argument ${arg}`);
  }
  if (config.keys.length === 0) throw new Error("no credentials configured: pass --key AKID=SECRET or TEST_STS_KEYS");
  return config;
}

const config = parseArgs(process.argv.slice(2));

// Long-term keys (configured) and temporary credentials (issued here), by access key id.
const longTermKeys = new Map(config.keys.map((k) => [k.accessKeyId, k]));
const issued = new Map();
let recorded = [];
let faults = defaultFaults();
let requestCounter = 0;

function defaultFaults() {
  return {
    throttleNext: 0,
    errorNext: 0,
    delayMs: 0,
    denyRoleArns: [],
    credentialLifetimeSeconds: null,
    eksAuthRoleArn: DEFAULT_EKS_AUTH_ROLE_ARN,
  };
}

// ---------------------------------------------------------------- helpers

function log(fields) {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...fields }) + "\n");
}

function xmlEscape(s) {
  return String(s).replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]);
}

function randomString(alphabet, length) {
  const bytes = crypto.randomBytes(length);
  let out = "";
  for (let i = 0; i < length; i++) out += alphabet[bytes[i] % alphabet.length];
  return out;
}
const UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64ISH = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// STS's own format: whole seconds, UTC, trailing Z (the JS SDK rejects offsets).
function isoSeconds(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// "20150830T123600Z" -> Date, or null.
function parseAmzDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value || "");
  if (!m) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

// Splits a raw query string the way SigV4 expects (percent-decoding only; '+' is '+').
function parseRawQuery(raw) {
  const query = {};
  if (!raw) return query;
  for (const part of raw.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1));
    if (key in query) query[key] = [].concat(query[key], value);
    else query[key] = value;
  }
  return query;
}

class ApiError extends Error {
  constructor(status, code, message, type = status >= 500 ? "Receiver" : "Sender") {
    super(message);
    this.status = status;
    this.code = code;
    this.type = type;
  }
}

// ---------------------------------------------------------------- SigV4 verification

// Returns { principal, accessKeyId, region, service } or throws ApiError.
async function verifySignature(req, rawPath, rawQuery, body, expectedService) {
  const authorization = req.headers["authorization"];
  if (!authorization) {
    throw new ApiError(403, "MissingAuthenticationToken", "Request is missing Authentication Token");
  }
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(authorization);
  if (!m) {
    throw new ApiError(400, "IncompleteSignature", `Authorization header is not a well-formed AWS4-HMAC-SHA256 header: ${authorization.replace(/Signature=\S+/, "Signature=...")}`);
  }
  const [, accessKeyId, scopeDate, region, service, signedHeaderList] = m;
  const signedHeaders = signedHeaderList.split(";");
  if (service !== expectedService) {
    throw new ApiError(403, "SignatureDoesNotMatch", `Credential should be scoped to correct service: '${expectedService}'.`);
  }
  if (!signedHeaders.includes("host")) {
    throw new ApiError(400, "IncompleteSignature", "'Host' must be a 'SignedHeader' in the AWS Authorization.");
  }
  // Every x-amz-* header that was sent must have been signed (the security token and the
  // date above all): otherwise a proxy could change them unnoticed.
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith("x-amz-") && !signedHeaders.includes(name)) {
      throw new ApiError(403, "SignatureDoesNotMatch", `Header '${name}' was sent but not signed.`);
    }
  }
  const amzDate = req.headers["x-amz-date"];
  const signingDate = parseAmzDate(amzDate);
  if (!signingDate) {
    throw new ApiError(400, "IncompleteSignature", "X-Amz-Date header is missing or not in the form YYYYMMDDTHHMMSSZ.");
  }
  if (amzDate.slice(0, 8) !== scopeDate) {
    throw new ApiError(403, "SignatureDoesNotMatch", `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}'`);
  }
  const now = Date.now();
  if (Math.abs(now - signingDate.getTime()) > MAX_CLOCK_SKEW_MS) {
    throw new ApiError(403, "SignatureDoesNotMatch", `Signature expired: ${amzDate} is now earlier than ${isoSeconds(new Date(now - MAX_CLOCK_SKEW_MS)).replace(/[-:]/g, "")} (${isoSeconds(new Date(now)).replace(/[-:]/g, "")} - 15 min.)`);
  }

  let credentials;
  let principal;
  const longTerm = longTermKeys.get(accessKeyId);
  const temporary = issued.get(accessKeyId);
  if (longTerm) {
    credentials = { accessKeyId, secretAccessKey: longTerm.secretAccessKey };
    principal = { kind: "user", arn: longTerm.arn, account: longTerm.arn.split(":")[4], userId: accessKeyId, transitiveTags: [] };
  } else if (temporary) {
    if (req.headers["x-amz-security-token"] !== temporary.sessionToken) {
      throw new ApiError(403, "InvalidClientTokenId", "The security token included in the request is invalid.");
    }
    if (temporary.expiration.getTime() <= now) {
      throw new ApiError(400, "ExpiredToken", "The security token included in the request is expired");
    }
    credentials = { accessKeyId, secretAccessKey: temporary.secretAccessKey, sessionToken: temporary.sessionToken };
    principal = { kind: "assumed-role", arn: temporary.assumedRoleArn, account: temporary.account, userId: temporary.assumedRoleId, roleArn: temporary.roleArn, transitiveTags: temporary.transitiveTags };
  } else {
    throw new ApiError(403, "InvalidClientTokenId", "The security token included in the request is invalid.");
  }

  // x-amz-content-sha256, when sent, is what the signer hashes instead of the body:
  // it must then describe the body we received.
  const bodyHash = crypto.createHash("sha256").update(body).digest("hex");
  const claimedHash = req.headers["x-amz-content-sha256"];
  if (claimedHash !== undefined && claimedHash !== "UNSIGNED-PAYLOAD" && claimedHash !== bodyHash) {
    throw new ApiError(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }

  const headers = {};
  for (const name of signedHeaders) {
    const value = req.headers[name];
    if (value === undefined) {
      throw new ApiError(403, "SignatureDoesNotMatch", `Signed header '${name}' is missing from the request.`);
    }
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const signer = new SignatureV4({
    credentials,
    region,
    service,
    sha256: Sha256,
    applyChecksum: false,
    uriEscapePath: true,
  });
  const toSign = {
    method: req.method,
    protocol: "http:",
    hostname: String(req.headers.host).replace(/:\d+$/, ""),
    path: rawPath,
    query: parseRawQuery(rawQuery),
    headers,
    body: body.length > 0 ? body : undefined,
  };
  const signed = await signer.sign(toSign, {
    signingDate,
    signingRegion: region,
    signingService: service,
    signableHeaders: new Set(signedHeaders),
  });
  const expected = signed.headers["authorization"];
  if (expected !== authorization) {
    // The reference's Authorization header goes into the record (not the answer) to
    // help debug a signer: it shows the scope and signed headers that were expected.
    throw Object.assign(
      new ApiError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."),
      { expectedAuthorization: expected },
    );
  }
  return { principal, accessKeyId, region, service };
}

// ---------------------------------------------------------------- validation

const ROLE_ARN_RE = /^arn:aws(-cn|-us-gov)?:iam::(\d{12}):role\/((?:[\x21-\x7e]+\/)*)?([\w+=,.@-]{1,64})$/;
const SESSION_NAME_RE = /^[\w+=,.@-]*$/;
// Tag keys and values: letters, digits, spaces and _ . : / = + - @ (STS's \p{L}\p{Z}\p{N}_.:/=+\-@).
const TAG_KEY_RE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$/u;
const TAG_VALUE_RE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

function validationError(value, member, constraint) {
  return new ApiError(400, "ValidationError", `1 validation error detected: Value '${value}' at '${member}' failed to satisfy constraint: ${constraint}`);
}

// Collects Foo.member.N(.Suffix) parameters into an array ordered by N (1-based, no gaps).
function memberList(params, prefix, suffixes) {
  const byIndex = new Map();
  const re = new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.member\\.(\\d+)(?:\\.(\\w+))?$`);
  for (const [name, value] of Object.entries(params)) {
    const m = re.exec(name);
    if (!m) continue;
    const index = Number(m[1]);
    const suffix = m[2] ?? "";
    if (!suffixes.includes(suffix)) throw new ApiError(400, "InvalidParameterValue", `Unknown parameter ${name}`);
    if (!byIndex.has(index)) byIndex.set(index, {});
    byIndex.get(index)[suffix] = value;
  }
  const indexes = [...byIndex.keys()].sort((a, b) => a - b);
  indexes.forEach((index, i) => {
    if (index !== i + 1) throw new ApiError(400, "InvalidParameterValue", `${prefix}.member indexes must start at 1 without gaps, got ${indexes.join(",")}`);
  });
  return indexes.map((i) => byIndex.get(i));
}

function parseAssumeRole(params, principal) {
  const roleArn = params.RoleArn;
  const sessionName = params.RoleSessionName;
  if (roleArn === undefined) throw new ApiError(400, "MissingParameter", "The request must contain the parameter RoleArn");
  if (sessionName === undefined) throw new ApiError(400, "MissingParameter", "The request must contain the parameter RoleSessionName");
  if (roleArn.length < 20 || roleArn.length > 2048) throw validationError(roleArn, "roleArn", "Member must have length between 20 and 2048");
  const arnMatch = ROLE_ARN_RE.exec(roleArn);
  if (!arnMatch) throw validationError(roleArn, "roleArn", "Member must be an IAM role ARN (arn:aws:iam::<12 digits>:role/[path/]name)");
  if (sessionName.length < 2 || sessionName.length > 64) throw validationError(sessionName, "roleSessionName", "Member must have length between 2 and 64");
  if (!SESSION_NAME_RE.test(sessionName)) throw validationError(sessionName, "roleSessionName", "Member must satisfy regular expression pattern: [\\w+=,.@-]*");

  let durationSeconds = 3600;
  if (params.DurationSeconds !== undefined) {
    if (!/^\d+$/.test(params.DurationSeconds)) throw validationError(params.DurationSeconds, "durationSeconds", "Member must be an integer");
    durationSeconds = Number(params.DurationSeconds);
    if (durationSeconds < 900 || durationSeconds > 43200) throw validationError(durationSeconds, "durationSeconds", "Member must have value between 900 and 43200");
  }
  // Role chaining (temporary credentials assuming a role) is limited to one hour.
  if (principal.kind === "assumed-role" && durationSeconds > 3600) {
    throw new ApiError(400, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.");
  }

  let policy = null;
  if (params.Policy !== undefined) {
    policy = params.Policy;
    if (policy.length < 1 || policy.length > 2048) throw validationError("...", "policy", "Member must have length between 1 and 2048");
    let parsed;
    try {
      parsed = JSON.parse(policy);
    } catch {
      throw new ApiError(400, "MalformedPolicyDocument", "The policy is not in the valid JSON format.");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || parsed.Statement === undefined) {
      throw new ApiError(400, "MalformedPolicyDocument", "Syntax errors in policy: a policy document needs a Statement.");
    }
  }

  const tags = memberList(params, "Tags", ["Key", "Value"]).map((t) => ({ key: t.Key, value: t.Value }));
  if (tags.length > 50) throw validationError(`[${tags.length} tags]`, "tags", "Member must have length less than or equal to 50");
  const seenKeys = new Set();
  for (const [i, tag] of tags.entries()) {
    if (tag.key === undefined || tag.value === undefined) throw new ApiError(400, "MissingParameter", `Tags.member.${i + 1} needs both Key and Value`);
    if (tag.key.length < 1 || tag.key.length > 128 || !TAG_KEY_RE.test(tag.key)) throw validationError(tag.key, `tags.${i + 1}.member.key`, "Member must have length between 1 and 128 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+");
    if (tag.value.length > 256 || !TAG_VALUE_RE.test(tag.value)) throw validationError(tag.value, `tags.${i + 1}.member.value`, "Member must have length less than or equal to 256 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*");
    const lower = tag.key.toLowerCase();
    if (seenKeys.has(lower)) throw new ApiError(400, "InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive.");
    seenKeys.add(lower);
  }
  const transitiveTagKeys = memberList(params, "TransitiveTagKeys", [""]).map((t) => t[""]);
  if (transitiveTagKeys.length > 50) throw validationError(`[${transitiveTagKeys.length} keys]`, "transitiveTagKeys", "Member must have length less than or equal to 50");
  for (const key of transitiveTagKeys) {
    // Stricter than documented on purpose: a transitive key without a tag is a bug in
    // the caller, so the test STS refuses it.
    if (!seenKeys.has(key.toLowerCase())) throw new ApiError(400, "InvalidParameterValue", `Transitive tag key '${key}' is not among the session tags.`);
  }
  // STS: "If you pass a session tag with the same key as an inherited tag, the operation fails."
  for (const inherited of principal.transitiveTags) {
    if (seenKeys.has(inherited.key.toLowerCase())) {
      throw new ApiError(400, "InvalidParameterValue", `Session tag '${inherited.key}' conflicts with a transitive tag inherited from the calling session.`);
    }
  }
  return {
    roleArn,
    account: arnMatch[2],
    roleName: arnMatch[4],
    roleSessionName: sessionName,
    durationSeconds,
    policy,
    tags,
    transitiveTagKeys,
  };
}

// ---------------------------------------------------------------- actions

function issueCredentials({ roleArn, account, roleName, sessionName, lifetimeSeconds, transitiveTags }) {
  const accessKeyId = "ASIA" + randomString(UPPER_ALNUM, 16);
  const secretAccessKey = randomString(BASE64ISH, 40);
  const sessionToken = "TestSts/" + crypto.randomBytes(96).toString("base64");
  const assumedRoleId = "AROA" + crypto.createHash("sha256").update(roleArn).digest("hex").slice(0, 17).toUpperCase() + ":" + sessionName;
  const entry = {
    accessKeyId,
    secretAccessKey,
    sessionToken,
    expiration: new Date(Math.floor(Date.now() / 1000) * 1000 + lifetimeSeconds * 1000),
    roleArn,
    account,
    assumedRoleArn: `arn:aws:sts::${account}:assumed-role/${roleName}/${sessionName}`,
    assumedRoleId,
    transitiveTags,
  };
  issued.set(accessKeyId, entry);
  return entry;
}

function assumeRole(params, principal, requestId, record) {
  const parsed = parseAssumeRole(params, principal);
  record.parsed = parsed;
  if (faults.denyRoleArns.includes(parsed.roleArn)) {
    throw new ApiError(403, "AccessDenied", `User: ${principal.arn} is not authorized to perform: sts:AssumeRole on resource: ${parsed.roleArn}`);
  }
  const lifetime = faults.credentialLifetimeSeconds ?? parsed.durationSeconds;
  const transitive = new Set(parsed.transitiveTagKeys.map((k) => k.toLowerCase()));
  const transitiveTags = [
    ...principal.transitiveTags,
    ...parsed.tags.filter((t) => transitive.has(t.key.toLowerCase())),
  ];
  const creds = issueCredentials({
    roleArn: parsed.roleArn,
    account: parsed.account,
    roleName: parsed.roleName,
    sessionName: parsed.roleSessionName,
    lifetimeSeconds: lifetime,
    transitiveTags,
  });
  record.issuedAccessKeyId = creds.accessKeyId;
  record.expiration = isoSeconds(creds.expiration);
  record.inheritedTransitiveTags = principal.transitiveTags;
  const packed = parsed.policy !== null || parsed.tags.length > 0
    ? `\n    <PackedPolicySize>${Math.min(99, Math.ceil(((parsed.policy?.length ?? 0) + JSON.stringify(parsed.tags).length) / 40))}</PackedPolicySize>`
    : "";
  return `<AssumeRoleResponse xmlns="${STS_NAMESPACE}">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <Arn>${xmlEscape(creds.assumedRoleArn)}</Arn>
      <AssumedRoleId>${xmlEscape(creds.assumedRoleId)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${creds.accessKeyId}</AccessKeyId>
      <SecretAccessKey>${xmlEscape(creds.secretAccessKey)}</SecretAccessKey>
      <SessionToken>${xmlEscape(creds.sessionToken)}</SessionToken>
      <Expiration>${isoSeconds(creds.expiration)}</Expiration>
    </Credentials>${packed}
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>${requestId}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
`;
}

function getCallerIdentity(principal, requestId) {
  return `<GetCallerIdentityResponse xmlns="${STS_NAMESPACE}">
  <GetCallerIdentityResult>
    <Arn>${xmlEscape(principal.arn)}</Arn>
    <UserId>${xmlEscape(principal.userId)}</UserId>
    <Account>${xmlEscape(principal.account)}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>${requestId}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`;
}

function stsErrorDocument(error, requestId) {
  return `<ErrorResponse xmlns="${STS_NAMESPACE}">
  <Error>
    <Type>${error.type}</Type>
    <Code>${xmlEscape(error.code)}</Code>
    <Message>${xmlEscape(error.message)}</Message>
  </Error>
  <RequestId>${requestId}</RequestId>
</ErrorResponse>
`;
}

// Consumes one injected fault, if any: throttling, then server errors.
function takeFault(kind) {
  if (faults.throttleNext > 0) {
    faults.throttleNext--;
    return kind === "sts"
      ? new ApiError(400, "Throttling", "Rate exceeded")
      : new ApiError(429, "ThrottlingException", "Rate exceeded");
  }
  if (faults.errorNext > 0) {
    faults.errorNext--;
    return kind === "sts"
      ? new ApiError(500, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")
      : new ApiError(500, "InternalServerException", "The request processing has failed because of an unknown error.");
  }
  return null;
}

// ---------------------------------------------------------------- EKS Auth

const CLUSTER_NAME_RE = /^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$/;
// The documented token pattern (three base64url segments).
const TOKEN_RE = /^[A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+$/;

// Best effort, unverified: EKS Auth answers with the token's subject; we cannot verify
// the token, so we only read it to fill in the response.
function tokenSubject(token) {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
    const k8s = payload["kubernetes.io"] ?? {};
    return {
      namespace: k8s.namespace ?? "default",
      serviceAccount: k8s.serviceaccount?.name ?? "default",
      podName: k8s.pod?.name ?? "unknown",
      audience: Array.isArray(payload.aud) ? payload.aud[0] : payload.aud ?? "pods.eks.amazonaws.com",
    };
  } catch {
    return { namespace: "default", serviceAccount: "default", podName: "unknown", audience: "pods.eks.amazonaws.com" };
  }
}

function eksAuth(cluster, body, record) {
  if (!CLUSTER_NAME_RE.test(cluster)) {
    throw new ApiError(400, "InvalidParameterException", `Invalid cluster name '${cluster}'`);
  }
  let parsed;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    throw new ApiError(400, "InvalidRequestException", "The request body is not valid JSON.");
  }
  const token = parsed?.token;
  record.parsed = { cluster, token };
  if (typeof token !== "string" || token.length === 0) {
    throw new ApiError(400, "InvalidParameterException", "token must be a non-empty string");
  }
  if (!TOKEN_RE.test(token)) {
    throw new ApiError(400, "InvalidTokenException", "The specified Kubernetes service account token is invalid.");
  }
  const roleArn = faults.eksAuthRoleArn;
  if (faults.denyRoleArns.includes(roleArn)) {
    throw new ApiError(400, "AccessDeniedException", `Not authorized to assume ${roleArn} for pod identity.`);
  }
  const subject = tokenSubject(token);
  const m = ROLE_ARN_RE.exec(roleArn);
  const account = m ? m[2] : DEFAULT_PRINCIPAL_ACCOUNT;
  const roleName = m ? m[4] : "role";
  const sessionName = `eks-${cluster}-${subject.podName}-${randomString("abcdefghijklmnopqrstuvwxyz0123456789", 8)}`
    .replace(/[^\w+=,.@-]/g, "-").slice(0, 64);
  const creds = issueCredentials({
    roleArn,
    account,
    roleName,
    sessionName,
    lifetimeSeconds: faults.credentialLifetimeSeconds ?? 6 * 3600,
    transitiveTags: [],
  });
  record.issuedAccessKeyId = creds.accessKeyId;
  record.expiration = isoSeconds(creds.expiration);
  const associationId = "a-" + crypto.createHash("sha256").update(`${subject.namespace}/${subject.serviceAccount}`).digest("hex").slice(0, 17);
  return {
    subject: { namespace: subject.namespace, serviceAccount: subject.serviceAccount },
    audience: subject.audience,
    podIdentityAssociation: {
      associationArn: `arn:aws:eks:us-east-1:${account}:podidentityassociation/${cluster}/${associationId}`,
      associationId,
    },
    assumedRoleUser: { arn: creds.assumedRoleArn, assumeRoleId: creds.assumedRoleId },
    credentials: {
      sessionToken: creds.sessionToken,
      secretAccessKey: creds.secretAccessKey,
      accessKeyId: creds.accessKeyId,
      expiration: Math.floor(creds.expiration.getTime() / 1000),
    },
  };
}

// ---------------------------------------------------------------- HTTP

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiError(413, "RequestEntityTooLarge", `Request body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res, status, contentType, body, extraHeaders = {}) {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}

// Returns why a /_faults update is invalid, or null.
function faultProblem(update) {
  const count = (v) => Number.isInteger(v) && v >= 0;
  if ("throttleNext" in update && !count(update.throttleNext)) return "throttleNext must be an integer >= 0";
  if ("errorNext" in update && !count(update.errorNext)) return "errorNext must be an integer >= 0";
  if ("delayMs" in update && !count(update.delayMs)) return "delayMs must be an integer >= 0";
  if ("credentialLifetimeSeconds" in update && update.credentialLifetimeSeconds !== null && !count(update.credentialLifetimeSeconds)) {
    return "credentialLifetimeSeconds must be null or an integer >= 0";
  }
  if ("denyRoleArns" in update && !(Array.isArray(update.denyRoleArns) && update.denyRoleArns.every((a) => typeof a === "string"))) {
    return "denyRoleArns must be an array of strings";
  }
  if ("eksAuthRoleArn" in update && typeof update.eksAuthRoleArn !== "string") return "eksAuthRoleArn must be a string";
  return null;
}

async function handleControl(req, res, path, body) {
  if (path === "/_requests" && req.method === "GET") {
    send(res, 200, "application/json", JSON.stringify(recorded));
  } else if (path === "/_reset" && req.method === "POST") {
    recorded = [];
    faults = defaultFaults();
    send(res, 200, "application/json", "{}");
  } else if (path === "/_faults" && req.method === "GET") {
    send(res, 200, "application/json", JSON.stringify(faults));
  } else if (path === "/_faults" && req.method === "POST") {
    let update;
    try {
      update = JSON.parse(body.toString("utf8") || "{}");
    } catch {
      send(res, 400, "application/json", JSON.stringify({ error: "body is not JSON" }));
      return;
    }
    for (const key of Object.keys(update)) {
      if (!(key in faults)) {
        send(res, 400, "application/json", JSON.stringify({ error: `unknown fault '${key}'`, known: Object.keys(faults) }));
        return;
      }
    }
    const problem = faultProblem(update);
    if (problem) {
      send(res, 400, "application/json", JSON.stringify({ error: problem }));
      return;
    }
    faults = { ...faults, ...update };
    send(res, 200, "application/json", JSON.stringify(faults));
  } else {
    send(res, 404, "application/json", JSON.stringify({ error: "no such control route" }));
  }
}

async function handle(req, res) {
  const requestId = crypto.randomUUID();
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? "" : url.slice(q + 1);
  let body;
  try {
    body = await readBody(req);
  } catch (e) {
    send(res, e.status ?? 400, "text/plain", e.message);
    return;
  }
  if (rawPath.startsWith("/_")) {
    await handleControl(req, res, rawPath, body);
    return;
  }

  const eksMatch = /^\/clusters\/([^/]+)\/assume-role-for-pod-identity$/.exec(rawPath);
  const kind = eksMatch ? "eks-auth" : "sts";
  const record = {
    seq: ++requestCounter,
    time: new Date().toISOString(),
    requestId,
    kind,
    method: req.method,
    path: rawPath,
    headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== "authorization" && k !== "x-amz-security-token")),
  };
  recorded.push(record);

  let status = 200;
  let contentType;
  let responseBody;
  let extraHeaders = {};
  try {
    if (kind === "sts") {
      if (rawPath !== "/") throw new ApiError(404, "NotFound", `No STS route ${rawPath}`);
      if (req.method !== "POST" && req.method !== "GET") throw new ApiError(405, "InvalidAction", `Method ${req.method} not allowed`);
      const contentTypeHeader = req.headers["content-type"] ?? "";
      const params = Object.fromEntries(new URLSearchParams(rawQuery));
      if (req.method === "POST") {
        if (!contentTypeHeader.startsWith("application/x-www-form-urlencoded")) {
          throw new ApiError(400, "InvalidParameterValue", `Content-Type must be application/x-www-form-urlencoded, got '${contentTypeHeader}'`);
        }
        for (const [k, v] of new URLSearchParams(body.toString("utf8"))) {
          if (k in params) throw new ApiError(400, "InvalidParameterValue", `Parameter ${k} given twice`);
          params[k] = v;
        }
      }
      record.action = params.Action ?? null;
      record.params = params;
      const auth = await verifySignature(req, rawPath, rawQuery, body, "sts");
      record.accessKeyId = auth.accessKeyId;
      record.region = auth.region;
      record.callerArn = auth.principal.arn;
      const fault = takeFault("sts");
      if (fault) throw fault;
      if (params.Version !== "2011-06-15") throw new ApiError(400, "InvalidParameterValue", `Version must be 2011-06-15, got '${params.Version}'`);
      contentType = "text/xml";
      if (params.Action === "AssumeRole") responseBody = assumeRole(params, auth.principal, requestId, record);
      else if (params.Action === "GetCallerIdentity") responseBody = getCallerIdentity(auth.principal, requestId);
      else throw new ApiError(400, "InvalidAction", `Could not find operation ${params.Action} for version 2011-06-15`);
    } else {
      if (req.method !== "POST") throw new ApiError(405, "InvalidRequestException", `Method ${req.method} not allowed`);
      const cluster = decodeURIComponent(eksMatch[1]);
      record.cluster = cluster;
      const auth = await verifySignature(req, rawPath, rawQuery, body, "eks-auth");
      record.accessKeyId = auth.accessKeyId;
      record.region = auth.region;
      record.callerArn = auth.principal.arn;
      const fault = takeFault("eks-auth");
      if (fault) throw fault;
      contentType = "application/json";
      responseBody = JSON.stringify(eksAuth(cluster, body, record));
    }
  } catch (e) {
    if (!(e instanceof ApiError)) {
      log({ level: "error", requestId, error: String(e?.stack ?? e) });
      e = new ApiError(500, kind === "sts" ? "InternalFailure" : "InternalServerException", String(e?.message ?? e));
    }
    status = e.status;
    record.error = { code: e.code, message: e.message };
    if (e.expectedAuthorization) record.error.expectedAuthorization = e.expectedAuthorization;
    if (kind === "sts") {
      contentType = "text/xml";
      responseBody = stsErrorDocument(e, requestId);
    } else {
      contentType = "application/json";
      // restJson1: the error type travels in x-amzn-ErrorType and in the body's __type.
      extraHeaders = { "x-amzn-errortype": e.code };
      responseBody = JSON.stringify({ __type: e.code, message: e.message });
    }
  }
  record.status = status;
  extraHeaders["x-amzn-requestid"] = requestId;
  log({ level: "info", requestId, kind, action: record.action ?? record.cluster, status, code: record.error?.code });
  const delay = faults.delayMs;
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  send(res, status, contentType, responseBody, extraHeaders);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    log({ level: "error", error: String(e?.stack ?? e) });
    if (!res.headersSent) send(res, 500, "text/plain", "internal error");
  });
});
server.keepAliveTimeout = 5000;
server.listen(config.port, config.host ?? "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
