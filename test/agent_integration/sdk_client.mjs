// The AWS SDK for JavaScript v3 as a pod would run it: the default credential chain
// (which reads AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)
// resolves credentials, then calls STS GetCallerIdentity at STS_ENDPOINT.
// Prints {"Account","Arn","AccessKeyId","Expiration"} (never a secret); exits 1 on failure.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const credentials = fromNodeProviderChain();
try {
  const resolved = await credentials();
  const client = new STSClient({ region: process.env.AWS_REGION ?? "us-east-1", endpoint: process.env.STS_ENDPOINT, credentials });
  const identity = await client.send(new GetCallerIdentityCommand({}));
  console.log(JSON.stringify({ Account: identity.Account, Arn: identity.Arn, AccessKeyId: resolved.accessKeyId,
                               Expiration: resolved.expiration?.toISOString() }));
} catch (error) {
  console.error(`sdk_client: ${error.name}: ${error.message}`);
  process.exit(1);
}
