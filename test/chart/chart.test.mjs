// Tests of charts/pod-identity with the real helm (lint + template) over a matrix of
// values, assertions on the rendered objects, schema validation of every object against
// the Kubernetes OpenAPI schema (kubernetes-models 5.1, Kubernetes 1.34; cert-manager and
// Prometheus Operator models for their CRDs), openssl checks of the generated
// certificates, and a golden file of the default rendering.
// Run: node --test test/chart   (UPDATE_GOLDEN=1 rewrites the golden file)
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as rbac from "kubernetes-models/rbac.authorization.k8s.io/v1";
import * as admission from "kubernetes-models/admissionregistration.k8s.io/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const here = path.dirname(fileURLToPath(import.meta.url));
const chart = path.resolve(here, "../../charts/pod-identity");
const golden = path.join(here, "golden", "default.yaml");
const RELEASE = "pod-identity";
const NAMESPACE = "pod-identity-system";

const MODELS = {
  v1: core, "apps/v1": apps, "policy/v1": policy, "rbac.authorization.k8s.io/v1": rbac,
  "admissionregistration.k8s.io/v1": admission, "networking.k8s.io/v1": networking,
  "cert-manager.io/v1": certManager, "monitoring.coreos.com/v1": monitoring,
};

function helm(args, { allowFailure = false } = {}) {
  const result = spawnSync("helm", args, { encoding: "utf8" });
  if (result.error) throw new Error(`cannot run helm (install it with scripts/setup): ${result.error.message}`);
  if (!allowFailure && result.status !== 0) throw new Error(`helm ${args.join(" ")} failed:\n${result.stderr}`);
  return result;
}

// One scratch directory for the whole run, removed at exit.
const scratch = mkdtempSync(path.join(tmpdir(), "chart-test-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
let valuesFiles = 0;

function writeValues(values) {
  const file = path.join(scratch, `values-${valuesFiles++}.yaml`);
  writeFileSync(file, YAML.stringify(values));
  return file;
}

function render(values = {}) {
  const out = helm(["template", RELEASE, chart, "--namespace", NAMESPACE, "-f", writeValues(values)]).stdout;
  return YAML.parseAllDocuments(out).map((d) => d.toJS()).filter((o) => o && o.kind);
}

const find = (objects, kind, predicate = () => true) => objects.find((o) => o.kind === kind && predicate(o));
const findAll = (objects, kind) => objects.filter((o) => o.kind === kind);

function validateAll(objects) {
  for (const object of objects) {
    const group = MODELS[object.apiVersion];
    assert.ok(group, `no schema for ${object.apiVersion} ${object.kind}`);
    const Model = group[object.kind];
    assert.ok(Model, `no schema for ${object.apiVersion} ${object.kind}`);
    try {
      new Model(object).validate();
    } catch (error) {
      throw new Error(`${object.kind}/${object.metadata?.name} does not match the schema: ${error.message}`);
    }
  }
}

function openssl(args, input) {
  return execFileSync("openssl", args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
}

function checkServingCertificate(caPem, certPem, webhookName) {
  const dir = mkdtempSync(path.join(scratch, "certs-"));
  try {
    writeFileSync(path.join(dir, "ca.pem"), caPem);
    writeFileSync(path.join(dir, "tls.pem"), certPem);
    const verify = spawnSync("openssl", ["verify", "-CAfile", path.join(dir, "ca.pem"), path.join(dir, "tls.pem")],
                             { encoding: "utf8" });
    assert.equal(verify.status, 0, `caBundle does not verify the serving certificate: ${verify.stderr}`);
    const sans = openssl(["x509", "-noout", "-ext", "subjectAltName", "-in", path.join(dir, "tls.pem")]);
    for (const name of [webhookName, `${webhookName}.${NAMESPACE}`, `${webhookName}.${NAMESPACE}.svc`,
                        `${webhookName}.${NAMESPACE}.svc.cluster.local`]) {
      assert.match(sans, new RegExp(`DNS:${name.replaceAll(".", "\\.")}(,|\\s|$)`), `SAN ${name} missing`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const b64 = (s) => Buffer.from(s, "base64").toString("utf8");

// Checks that hold for every rendering.
function checkCommon(objects, values) {
  validateAll(objects);
  const mwc = find(objects, "MutatingWebhookConfiguration");
  assert.ok(mwc, "no MutatingWebhookConfiguration");
  const hook = mwc.webhooks[0];
  const service = find(objects, "Service", (s) => s.metadata.name === hook.clientConfig.service.name);
  assert.ok(service, "the webhook configuration does not point at a rendered Service");
  assert.equal(hook.clientConfig.service.namespace, NAMESPACE);
  assert.equal(hook.clientConfig.service.path, "/mutate");
  assert.deepEqual(hook.admissionReviewVersions, ["v1"]);
  assert.equal(hook.sideEffects, "None");
  assert.equal(hook.reinvocationPolicy, "IfNeeded");
  assert.equal(hook.timeoutSeconds, values.webhook?.timeoutSeconds ?? 10);
  assert.equal(hook.failurePolicy, values.webhook?.failurePolicy ?? "Ignore");
  assert.deepEqual(hook.rules, [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"],
                                  scope: "Namespaced" }]);
  const excluded = hook.namespaceSelector.matchExpressions.find((e) => e.key === "kubernetes.io/metadata.name");
  assert.equal(excluded.operator, "NotIn");
  assert.ok(excluded.values.includes(NAMESPACE), "the release namespace is not excluded");
  for (const ns of values.webhook?.excludeNamespaces ?? ["kube-system"]) assert.ok(excluded.values.includes(ns));
  const optOut = hook.objectSelector.matchExpressions.find((e) => e.key === (values.webhook?.optOutLabel?.key ?? "pod-identity.io/inject"));
  assert.ok(optOut && optOut.operator === "NotIn", "objectSelector does not honour the opt-out label");

  // The Service reaches the webhook pods' HTTPS port.
  const deployment = find(objects, "Deployment");
  const podLabels = deployment.spec.template.metadata.labels;
  for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(podLabels[k], v);
  const container = deployment.spec.template.spec.containers[0];
  assert.ok(container.ports.some((p) => p.name === service.spec.ports[0].targetPort));
  // Security: non-root, read-only root, no capabilities.
  const podSecurity = deployment.spec.template.spec.securityContext;
  assert.equal(podSecurity.runAsNonRoot, true);
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(container.securityContext.capabilities, { drop: ["ALL"] });
  assert.equal(container.readinessProbe.httpGet.path, "/readyz");
  assert.equal(container.livenessProbe.httpGet.path, "/healthz");
  assert.ok(container.resources?.requests, "webhook resources");
  assert.ok(find(objects, "PodDisruptionBudget"), "no PodDisruptionBudget");
  assert.ok(deployment.spec.template.spec.topologySpreadConstraints?.length, "replicas are not spread");

  // The agent DaemonSet.
  const daemonset = find(objects, "DaemonSet");
  const agentPod = daemonset.spec.template.spec;
  assert.equal(agentPod.hostNetwork, true);
  assert.equal(agentPod.priorityClassName, "system-node-critical");
  assert.ok(agentPod.tolerations.some((t) => t.operator === "Exists" && !t.key), "does not tolerate all taints");
  const init = agentPod.initContainers.find((c) => c.name === "setup-link");
  assert.deepEqual(init.securityContext.capabilities, { drop: ["ALL"], add: ["NET_ADMIN"] });
  assert.ok(init.args.includes("--address=169.254.170.23/32"));
  const agent = agentPod.containers[0];
  assert.deepEqual(agent.securityContext.capabilities, { drop: ["ALL"], add: ["NET_BIND_SERVICE"] });
  assert.equal(agent.securityContext.readOnlyRootFilesystem, true);
  assert.equal(agent.securityContext.runAsNonRoot, true);
  assert.ok(agent.args.includes(`--broker=${values.agent?.broker ?? "sts"}`));
  assert.equal(agent.readinessProbe.httpGet.path, "/readyz");

  // The ConfigMap holds exactly the associations given, and both components mount it.
  const configMap = find(objects, "ConfigMap");
  const file = YAML.parse(configMap.data["associations.yaml"]);
  assert.equal(file.clusterName, values.clusterName ?? "");
  assert.deepEqual(file.associations, values.associations ?? []);
  for (const spec of [deployment.spec.template.spec, agentPod]) {
    const volume = spec.volumes.find((v) => v.configMap?.name === configMap.metadata.name);
    assert.ok(volume, "associations ConfigMap not mounted");
    const mount = spec.containers[0].volumeMounts.find((m) => m.name === volume.name);
    assert.ok(mount && !mount.subPath, "associations must be a directory mount (subPath mounts never update)");
    assert.ok(spec.containers[0].args.includes(`--associations=${mount.mountPath}/associations.yaml`));
  }

  // RBAC matches the token validation mode.
  const role = find(objects, "ClusterRole");
  if ((values.agent?.tokenValidation ?? "jwks") === "jwks") {
    assert.ok(role.rules.some((r) => r.nonResourceURLs?.includes("/openid/v1/jwks") && r.verbs.includes("get")));
  } else {
    assert.ok(role.rules.some((r) => r.resources?.includes("tokenreviews") && r.verbs.includes("create")));
  }
  return { mwc, hook, service, deployment, daemonset, configMap };
}

const demoAssociation = {
  namespace: "demo-ns", serviceAccount: "demo-sa",
  roleArn: "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access",
};

test("helm lint passes with the defaults and with associations", () => {
  helm(["lint", chart]);
  helm(["lint", chart, "-f", writeValues({ clusterName: "demo", associations: [demoAssociation] })]);
});

test("generated certificates: caBundle verifies the serving certificate, with the Service's SANs", () => {
  const values = { clusterName: "demo", associations: [demoAssociation] };
  const objects = render(values);
  const { hook, deployment } = checkCommon(objects, values);
  const secretName = deployment.spec.template.spec.volumes.find((v) => v.name === "tls").secret.secretName;
  const secret = find(objects, "Secret", (s) => s.metadata.name === secretName);
  assert.ok(secret, "the TLS Secret the webhook mounts is not rendered");
  assert.equal(secret.type, "kubernetes.io/tls");
  assert.equal(hook.clientConfig.caBundle, secret.data["ca.crt"]);
  checkServingCertificate(b64(hook.clientConfig.caBundle), b64(secret.data["tls.crt"]), hook.clientConfig.service.name);
});

test("cert-manager mode: Issuer, Certificate with the four SANs, CA injection annotation", () => {
  const values = { certificates: { mode: "certManager" } };
  const objects = render(values);
  const { mwc, hook, deployment } = checkCommon(objects, values);
  const certificate = find(objects, "Certificate");
  const svc = hook.clientConfig.service.name;
  assert.deepEqual(certificate.spec.dnsNames, [svc, `${svc}.${NAMESPACE}`, `${svc}.${NAMESPACE}.svc`,
                                               `${svc}.${NAMESPACE}.svc.cluster.local`]);
  assert.equal(mwc.metadata.annotations["cert-manager.io/inject-ca-from"], `${NAMESPACE}/${certificate.metadata.name}`);
  assert.equal(hook.clientConfig.caBundle, undefined);
  const issuer = find(objects, "Issuer");
  assert.equal(certificate.spec.issuerRef.name, issuer.metadata.name);
  assert.equal(deployment.spec.template.spec.volumes.find((v) => v.name === "tls").secret.secretName,
               certificate.spec.secretName);
  assert.equal(findAll(objects, "Secret").length, 0, "cert-manager mode must not render a Secret");

  const custom = render({ certificates: { mode: "certManager", certManager: { issuerRef: { kind: "ClusterIssuer", name: "corp-ca" } } } });
  assert.equal(find(custom, "Issuer"), undefined);
  assert.deepEqual(find(custom, "Certificate").spec.issuerRef, { kind: "ClusterIssuer", name: "corp-ca" });
});

test("existing Secret mode: the given Secret and caBundle are used; missing values fail clearly", () => {
  const dir = mkdtempSync(path.join(scratch, "existing-"));
  execFileSync(path.resolve(here, "../../certs/generate"),
               ["--service", `${RELEASE}-webhook`, "--namespace", NAMESPACE, "--out", dir], { stdio: "pipe" });
  const caBundle = Buffer.from(readFileSync(path.join(dir, "ca.crt"))).toString("base64");
  const values = { certificates: { mode: "existingSecret", existingSecret: { name: "my-tls", caBundle } } };
  const objects = render(values);
  const { hook, deployment } = checkCommon(objects, values);
  assert.equal(hook.clientConfig.caBundle, caBundle);
  assert.equal(deployment.spec.template.spec.volumes.find((v) => v.name === "tls").secret.secretName, "my-tls");
  checkServingCertificate(b64(caBundle), readFileSync(path.join(dir, "tls.crt"), "utf8"), hook.clientConfig.service.name);
  const missing = helm(["template", RELEASE, chart, "-n", NAMESPACE, "--set", "certificates.mode=existingSecret",
                        "--set", "certificates.existingSecret.name=x"], { allowFailure: true });
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /caBundle is required/);
  rmSync(dir, { recursive: true, force: true });
});

test("eks-auth broker with TokenReview validation", () => {
  const values = { clusterName: "prod", agent: { broker: "eks-auth", tokenValidation: "tokenReview", region: "eu-west-1" } };
  const objects = render(values);
  const { daemonset } = checkCommon(objects, values);
  const args = daemonset.spec.template.spec.containers[0].args;
  assert.ok(args.includes("--cluster-name=prod"));
  assert.ok(args.includes("--region=eu-west-1"));
  assert.ok(args.some((a) => a.startsWith("--token-review-url=")));
  const noCluster = helm(["template", RELEASE, chart, "-n", NAMESPACE, "--set", "agent.broker=eks-auth"],
                         { allowFailure: true });
  assert.notEqual(noCluster.status, 0);
  assert.match(noCluster.stderr, /clusterName is required/);
});

test("sts broker: the agent's own credentials from a Secret", () => {
  const values = { agent: { awsCredentials: { existingSecret: "agent-aws" }, stsEndpoint: "https://sts.internal" } };
  const { daemonset } = checkCommon(render(values), values);
  const agent = daemonset.spec.template.spec.containers[0];
  assert.deepEqual(agent.envFrom, [{ secretRef: { name: "agent-aws" } }]);
  assert.ok(agent.args.includes("--sts-endpoint=https://sts.internal"));
});

test("custom selectors, policy and exclusions", () => {
  const values = {
    webhook: {
      failurePolicy: "Fail", timeoutSeconds: 5, excludeNamespaces: ["kube-system", "monitoring"],
      optOutLabel: { key: "example.com/no-aws", value: "true" },
      namespaceSelectorExpressions: [{ key: "team", operator: "Exists" }],
      objectSelectorExpressions: [{ key: "tier", operator: "In", values: ["backend"] }],
    },
  };
  const { hook } = checkCommon(render(values), values);
  assert.ok(hook.namespaceSelector.matchExpressions.some((e) => e.key === "team" && e.operator === "Exists"));
  assert.ok(hook.objectSelector.matchExpressions.some((e) => e.key === "tier"));
  assert.deepEqual(hook.objectSelector.matchExpressions[0], { key: "example.com/no-aws", operator: "NotIn", values: ["true"] });
});

test("no associations and many associations", () => {
  checkCommon(render({}), {});
  const many = Array.from({ length: 300 }, (_, i) => ({
    namespace: `ns-${i % 30}`, serviceAccount: `sa-${i}`, roleArn: `arn:aws:iam::111122223333:role/r-${i}`,
    ...(i % 3 === 0 ? { disableSessionTags: true, policy: '{"Version":"2012-10-17","Statement":[]}' } : {}),
    ...(i % 5 === 0 ? { targetRoleArn: "arn:aws-cn:iam::444455556666:role/target", tags: { team: "a b", "x/y": "1" } } : {}),
  }));
  const values = { clusterName: "big", associations: many };
  checkCommon(render(values), values);
});

test("optional ServiceMonitor and NetworkPolicy", () => {
  const values = { serviceMonitor: { enabled: true }, networkPolicy: { enabled: true } };
  const objects = render(values);
  checkCommon(objects, values);
  assert.ok(find(objects, "ServiceMonitor"));
  assert.ok(find(objects, "NetworkPolicy"));
  const defaults = render({});
  assert.equal(find(defaults, "ServiceMonitor"), undefined);
  assert.equal(find(defaults, "NetworkPolicy"), undefined);
});

test("invalid values fail with a message naming the value", () => {
  const bad = helm(["template", RELEASE, chart, "--set", "certificates.mode=bogus"], { allowFailure: true });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /certificates.mode must be/);
  const broker = helm(["template", RELEASE, chart, "--set", "agent.broker=imds"], { allowFailure: true });
  assert.match(broker.stderr, /agent.broker must be/);
  const policy = helm(["template", RELEASE, chart, "--set", "webhook.failurePolicy=Sometimes"], { allowFailure: true });
  assert.notEqual(policy.status, 0);
  assert.match(policy.stderr, /failurePolicy/);
  const arn = helm(["template", RELEASE, chart, "--set", "associations[0].namespace=a",
                    "--set", "associations[0].serviceAccount=b", "--set", "associations[0].roleArn=arn:aws:iam::1:user/x"],
                   { allowFailure: true });
  assert.notEqual(arn.status, 0);
  assert.match(arn.stderr, /roleArn/);
});

// Generated key material differs on every render; everything else must not.
function normalize(text) {
  return text
    .replace(/^(\s*(tls\.crt|tls\.key|ca\.crt|caBundle)): .*$/gm, "$1: <generated>");
}

test("golden: helm template with the default values", () => {
  const out = normalize(helm(["template", RELEASE, chart, "--namespace", NAMESPACE]).stdout);
  if (process.env.UPDATE_GOLDEN === "1" || !existsSync(golden)) {
    if (process.env.UPDATE_GOLDEN !== "1") assert.fail(`missing ${golden}; run with UPDATE_GOLDEN=1`);
    writeFileSync(golden, out);
  }
  assert.equal(out, readFileSync(golden, "utf8"),
               "rendered output changed; if deliberate, run UPDATE_GOLDEN=1 node --test test/chart");
});
