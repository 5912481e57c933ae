// Regenerates node-{es256,rs256}.{jwks.json,token}: tokens signed by Node's own crypto
// (not by our minter), so the verifier is checked against an independent signer.
const fs = require("fs");
const crypto = require("crypto");
for (const [alg, opts] of [["ES256", ["ec", { namedCurve: "P-256" }]], ["RS256", ["rsa", { modulusLength: 2048 }]]]) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(...opts);
  const kid = "node-" + alg.toLowerCase();
  const jwk = Object.assign(publicKey.export({ format: "jwk" }), { kid, use: "sig", alg });
  const iat = 1700000000;
  const claims = {
    aud: ["pods.eks.amazonaws.com"], exp: iat + 3600, iat, iss: "https://oidc.cluster.test",
    "kubernetes.io": {
      namespace: "team-a",
      pod: { name: "node-signed", uid: "11111111-2222-3333-4444-555555555555" },
      serviceaccount: { name: "app", uid: "66666666-7777-8888-9999-000000000000" },
    },
    nbf: iat, sub: "system:serviceaccount:team-a:app",
  };
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = b64({ alg, kid }) + "." + b64(claims);
  const sig = crypto.sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
  fs.writeFileSync(kid + ".jwks.json", JSON.stringify({ keys: [jwk] }) + "\n");
  fs.writeFileSync(kid + ".token", input + "." + sig.toString("base64url"));
}
