// Mints a UCAN chain with the TypeScript reference library @ucans/ucans:
// a fresh root key delegates http/* on RESOURCE to a fresh agent key, and the
// agent invokes ABILITY on RESOURCE, addressed to GATEWAY_DID, with a nonce.
//
// usage: node mint-chain.mjs GATEWAY_DID RESOURCE_URL ABILITY [TTL_SECONDS]
// prints one JSON line: {root_did, agent_did, invocation, proofs, ucv}
import * as ucans from "@ucans/ucans";

function capability(url, ability) {
  const colon = url.indexOf(":");
  const [namespace, ...segments] = ability.split("/");
  return {
    with: { scheme: url.slice(0, colon), hierPart: url.slice(colon + 1) },
    can: { namespace, segments },
  };
}

async function main() {
  const [gatewayDid, resource, ability, ttlArg] = process.argv.slice(2);
  if (!gatewayDid || !resource || !ability) {
    throw new Error("usage: node mint-chain.mjs GATEWAY_DID RESOURCE_URL ABILITY [TTL_SECONDS]");
  }
  const ttl = Number(ttlArg ?? 30);
  const root = await ucans.EdKeypair.create();
  const agent = await ucans.EdKeypair.create();
  const delegation = await ucans.build({
    issuer: root,
    audience: agent.did(),
    lifetimeInSeconds: 3600,
    capabilities: [capability(resource, "http/*")],
  });
  const delegationJwt = ucans.encode(delegation);
  const invocation = await ucans.build({
    issuer: agent,
    audience: gatewayDid,
    lifetimeInSeconds: ttl,
    capabilities: [capability(resource, ability)],
    proofs: [delegationJwt],
    addNonce: true,
  });
  const invocationJwt = ucans.encode(invocation);
  process.stdout.write(
    JSON.stringify({
      root_did: root.did(),
      agent_did: agent.did(),
      invocation: invocationJwt,
      proofs: [delegationJwt],
      ucv: JSON.parse(Buffer.from(invocationJwt.split(".")[0], "base64url").toString()).ucv,
    }) + "\n",
  );
}

main().catch((e) => {
  process.stderr.write(`mint-chain: ${e?.stack ?? e}\n`);
  process.exit(1);
});
