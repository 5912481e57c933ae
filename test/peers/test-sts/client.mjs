// Resolves credentials the way an application in a pod does (the AWS SDK for
// JavaScript v3 default chain: env, shared files, container credentials via
// AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, ...)
// and proves they work by calling STS GetCallerIdentity at $STS_ENDPOINT (e.g. the
// test STS, which verifies the signature with the secret it issued).
// Prints one JSON line {"Account","Arn","AccessKeyId"} (never the secret or the token);
// exits 1 with the error's name and message on stderr when anything fails.
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";

const endpoint = process.env.STS_ENDPOINT;
if (!endpoint) {
  process.stderr.write("client.mjs: set STS_ENDPOINT (e.g. http://127.0.0.1:PORT)\n");
  process.exit(2);
}

try {
  const provider = fromNodeProviderChain();
  const credentials = await provider();
  const sts = new STSClient({
    endpoint,
    region: process.env.AWS_REGION || "us-east-1",
    credentials: provider,
    maxAttempts: 1,
  });
  const identity = await sts.send(new GetCallerIdentityCommand({}));
  process.stdout.write(JSON.stringify({
    Account: identity.Account,
    Arn: identity.Arn,
    AccessKeyId: credentials.accessKeyId,
  }) + "\n");
} catch (e) {
  process.stderr.write(`client.mjs: ${e?.name ?? "Error"}: ${e?.message ?? e}\n`);
  process.exit(1);
}
