/**
 * The interop check the Python suite runs (tests/clients/test_typescript.py):
 * Node, through this package, against a real Python server with tokens on.
 * Calls every RPC (the export streamed), an error case, a cross-workspace
 * refusal, a method the server does not serve and a call without a token,
 * checks each answer, and prints a JSON report on its last line for the Python
 * side to compare with its own client's answers.
 *
 *   VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... VECTOROS_WORKSPACE=interop \
 *   VECTOROS_FOREIGN=globex node dist/test/interop.js
 *
 * With INTEROP_MODE=tls (and VECTOROS_TLS_CA, VECTOROS_TLS_CERT, VECTOROS_TLS_KEY)
 * it checks mutual TLS instead: a forecast with the client certificate, and a
 * refusal without it.
 */
import assert from "node:assert/strict";

import {
  InvalidArgumentError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
  VectorOSClient,
  VectorOSError,
  common,
  forecast,
  insight,
  scoring,
  serviceConfig,
  DEFAULT_RETRY,
} from "../src";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const ADDRESS = env("VECTOROS_ADDRESS");
const QUARTER = { startTime: new Date("2027-01-01T00:00:00Z"), endTime: new Date("2027-04-01T00:00:00Z") };
const called = new Set<string>();

function deals(): common.Deal[] {
  const notes = [
    "renewal with procurement, security review passed",
    "new platform, champion in finance, competitor shortlisted",
    "migration off on-prem warehouse, CFO sponsor",
    "pilot in one clinic, legal review slow",
    "expansion to three plants, budget approved",
    "champion left, security review requested",
  ];
  const outcomes = [common.DealOutcome.DEAL_OUTCOME_WON, common.DealOutcome.DEAL_OUTCOME_LOST,
    common.DealOutcome.DEAL_OUTCOME_OPEN];
  return notes.map((text, i) => common.Deal.fromPartial({
    id: `ts-${i}`, name: `TypeScript deal ${i}`, company: `Company ${i}`, industry: i % 2 ? "software" : "logistics",
    notes: text, value: 15_000 * (i + 1), currency: "USD", stage: "proposal", probability: 0.2 + 0.1 * i,
    outcome: outcomes[i % 3], createdTime: new Date(Date.UTC(2026, 5, 1 + i)),
    expectedCloseTime: new Date(Date.UTC(2027, 1, 1 + i)), activityCounts: { emails: 3 + i, meetings: i },
    competitorPresent: i % 2 === 0, numericAttributes: { seats: 10 * (i + 1) },
  }));
}

async function expectError<T extends VectorOSError>(kind: new (...args: never[]) => T, run: () => Promise<unknown>): Promise<T> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${String(error)}`);
    return error as T;
  }
  throw new assert.AssertionError({ message: `expected ${kind.name}, the call succeeded` });
}

async function full(): Promise<object> {
  const workspace = env("VECTOROS_WORKSPACE");
  const foreign = env("VECTOROS_FOREIGN");
  const client = new VectorOSClient(ADDRESS, { token: env("VECTOROS_TOKEN") });
  const mark = (name: string) => called.add(name);
  try {
    const embedded = await client.embedding.embed({ texts: ["renewal with procurement", ""] });
    mark("Embed");
    assert.equal(embedded.embeddings.length, 2);
    const norm = Math.hypot(...embedded.embeddings[0].values);
    assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    const info = await client.embedding.getModelInfo({});
    mark("EmbeddingService.GetModelInfo");
    assert.equal(info.dimension, embedded.dimension);
    const all = deals();
    const byDeal = await client.embedding.embedDeals({ deals: all.slice(0, 2) });
    mark("EmbedDeals");
    assert.equal(byDeal.templateVersion, info.templateVersion);

    const upserted = await client.similarity.upsertDeals({ workspaceId: workspace, deals: all });
    mark("UpsertDeals");
    assert.equal(upserted.upserted, 6);
    const similar = await client.similarity.findSimilarDeals({ workspaceId: workspace, dealId: "ts-0", topK: 3 });
    mark("FindSimilarDeals");
    assert.equal(similar.matches.length, 3);
    assert.ok(similar.matches.every((m) => m.deal?.id !== "ts-0" && m.deal?.workspaceId === workspace));
    const scores = similar.matches.map((m) => m.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
    const stats = await client.similarity.getStats({ workspaceId: workspace });
    mark("GetStats");
    assert.equal(stats.totalDeals, 6n);

    const open = all.filter((d) => d.outcome === common.DealOutcome.DEAL_OUTCOME_OPEN);
    const batch = await client.scoring.scoreDeals({ deals: open, topFactors: 3 });
    mark("ScoreDeals");
    const single = await client.scoring.scoreDeal({ deal: open[0], topFactors: 3 });
    mark("ScoreDeal");
    assert.equal(single.score?.winProbability, batch.scores[0].winProbability);
    assert.equal(single.score?.topFactors.length, 3);
    const scorer = await client.scoring.getModelInfo({});
    mark("ScoringService.GetModelInfo");
    assert.equal(scorer.info?.model?.name, single.score?.model?.name);

    const forecastRequest = forecast.ForecastRequest.fromPartial({
      deals: open, period: QUARTER, options: { seed: 7n, simulations: 4_000 },
    });
    const forecasted = await client.forecast.forecast(forecastRequest);
    mark("Forecast");
    assert.equal(forecasted.seed, 7n);
    const weighted = open.reduce((sum, d) => sum + d.value * (d.probability ?? 0), 0);
    assert.ok(Math.abs((forecasted.result?.weightedPipeline ?? 0) - weighted) < 1e-6);
    const compared = await client.forecast.compareScenarios({
      baseDeals: open, period: QUARTER, options: { seed: 7n, simulations: 4_000 },
      scenarios: [{ name: "lose ts-2", removedDealIds: ["ts-2"] }],
    });
    mark("CompareScenarios");
    assert.ok((compared.scenarios[0].meanDifference ?? 0) < 0);
    assert.equal(compared.base?.mean, forecasted.result?.mean);

    const target = { ...open[0], workspaceId: workspace };
    const insights = await client.insight.generateInsights({ deal: target });
    mark("GenerateInsights");
    assert.ok(insights.insightSetId && insights.insights.length > 0);
    const feedback = {
      workspaceId: workspace, insightSetId: insights.insightSetId, insightId: insights.insights[0].id,
      rating: insight.FeedbackRating.FEEDBACK_RATING_HELPFUL, actedOn: true, idempotencyKey: "ts-interop-1",
    };
    const recorded = await client.insight.recordFeedback(feedback);
    const repeated = await client.insight.recordFeedback(feedback);
    mark("RecordFeedback");
    assert.equal(recorded.duplicate, false);
    assert.equal(repeated.duplicate, true);
    assert.equal(repeated.feedbackId, recorded.feedbackId);
    const outcome = await client.insight.recordOutcome({
      workspaceId: workspace, dealId: target.id, outcome: common.DealOutcome.DEAL_OUTCOME_WON,
      closedTime: new Date("2026-12-01T00:00:00Z"), finalValue: target.value,
    });
    mark("RecordOutcome");
    assert.equal(outcome.duplicate, false);
    const scan = await client.insight.scanPipeline({ workspaceId: workspace });
    mark("ScanPipeline");
    assert.ok(scan.scannedDeals >= 1);
    const lines: string[] = [];
    for await (const chunk of client.insight.exportTrainingData({
      workspaceId: workspace, format: insight.ExportFormat.EXPORT_FORMAT_LABELLED_EXAMPLES,
    })) {
      lines.push(...chunk.lines);
    }
    mark("ExportTrainingData");
    const exported = lines.map((line) => JSON.parse(line));
    const mine = exported.find((e) => e.generated.insight_set_id === insights.insightSetId);
    assert.ok(mine, "the insight set is in the export");
    assert.equal(mine.feedback[0].feedback_id, recorded.feedbackId);
    assert.equal(mine.outcome.outcome, "won");
    const deleted = await client.similarity.deleteDeals({ workspaceId: workspace, dealIds: ["ts-5", "never"] });
    mark("DeleteDeals");
    assert.equal(deleted.deleted, 1);

    // Errors.
    const invalid = await expectError(InvalidArgumentError, () => client.forecast.forecast({
      deals: [{ id: "bad", value: -5, probability: 0.5 }], period: QUARTER,
    }));
    assert.equal(invalid.field, "deals[0].value");
    assert.equal(invalid.fieldViolations[0].description, "must be finite and >= 0");
    const refused = await expectError(PermissionDeniedError, () => client.similarity.getStats({ workspaceId: foreign }));
    assert.equal(refused.field, "workspace_id");
    assert.equal(refused.reason, "PERMISSION_DENIED");
    const refusedStream = await expectError(PermissionDeniedError, async () => {
      for await (const _ of client.insight.exportTrainingData({
        workspaceId: foreign, format: insight.ExportFormat.EXPORT_FORMAT_SCORER_ROWS,
      })) { /* nothing arrives */ }
    });
    const unimplemented = await expectError(UnimplementedError, () => client.callRaw(
      "/vectoros.v1.ScoringService/ExplainDeal", scoring.ScoreDealRequest.encode({ deal: open[0], modelVersion: 0n,
        topFactors: 0 }).finish()));
    assert.match(unimplemented.message, /older API than this client/);
    assert.equal((await client.similarity.getStats({ workspaceId: workspace })).totalDeals, 5n); // still fine
    const anonymous = new VectorOSClient(ADDRESS);
    const unauthenticated = await expectError(UnauthenticatedError, () => anonymous.similarity.getStats({
      workspaceId: workspace,
    }));
    anonymous.close();

    return {
      called: [...called].sort(),
      serviceConfig: serviceConfig(DEFAULT_RETRY),
      dimension: embedded.dimension,
      deals: open.map((d) => common.Deal.toJSON(d)),
      winProbabilities: batch.scores.map((s) => s.winProbability),
      forecastRequest: forecast.ForecastRequest.toJSON(forecastRequest),
      forecastMean: forecasted.result?.mean,
      insightSetId: insights.insightSetId,
      exportedLines: lines.length,
      errors: {
        invalid: { code: invalid.codeName, field: invalid.field, requestId: invalid.requestId },
        foreign: { code: refused.codeName, field: refused.field, reason: refused.reason },
        foreignStream: { code: refusedStream.codeName, field: refusedStream.field },
        unimplemented: { code: unimplemented.codeName, message: unimplemented.details },
        unauthenticated: { code: unauthenticated.codeName },
      },
    };
  } finally {
    client.close();
  }
}

async function tls(): Promise<object> {
  const ca = env("VECTOROS_TLS_CA");
  const request = { deals: [{ id: "a", value: 1_000, probability: 0.5 }], period: QUARTER };
  const mutual = new VectorOSClient(ADDRESS, { tls: { ca, cert: env("VECTOROS_TLS_CERT"), key: env("VECTOROS_TLS_KEY") } });
  const answered = await mutual.forecast.forecast(request);
  mutual.close();
  assert.equal(answered.result?.weightedPipeline, 500);
  const anonymous = new VectorOSClient(ADDRESS, { tls: { ca }, waitForReady: false, timeoutMs: 5_000 });
  const refused = await expectError(UnavailableError, () => anonymous.forecast.forecast(request));
  anonymous.close();
  return { weightedPipeline: answered.result?.weightedPipeline, withoutCertificate: refused.codeName };
}

async function main(): Promise<void> {
  const report = process.env.INTEROP_MODE === "tls" ? await tls() : await full();
  console.log(JSON.stringify(report, (_, value) => (typeof value === "bigint" ? value.toString() : value)));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
