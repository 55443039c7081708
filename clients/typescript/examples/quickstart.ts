import { VectorOSClient } from "../src";

const client = new VectorOSClient(process.env.VECTOROS_ADDRESS!, { token: process.env.VECTOROS_TOKEN });
const deal = { id: "d-42", workspaceId: "acme", name: "Acme renewal", notes: "Security review passed.", value: 120_000,
  currency: "USD", probability: 0.6, expectedCloseTime: new Date("2027-02-10T00:00:00Z") };
async function main(): Promise<void> {
  await client.similarity.upsertDeals({ workspaceId: "acme", deals: [deal] }); // embedded and stored
  const { score } = await client.scoring.scoreDeal({ deal });
  const { matches } = await client.similarity.findSimilarDeals({ workspaceId: "acme", deal, topK: 5 });
  console.log(`win ${score?.winProbability.toFixed(2)}, similar: ${matches.map((m) => m.deal?.id)}`);
  client.close();
}
main();
