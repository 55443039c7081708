/**
 * VectorOSClient: one grpc-js channel and, per service, one promise-returning
 * method per RPC that takes a plain object (ts-proto's DeepPartial of the
 * request) and resolves to the generated response type. Every call gets the
 * client's deadline (or its own `timeoutMs`), wait-for-ready, the token and an
 * x-request-id; failures are typed errors (./errors).
 */
import { randomBytes } from "node:crypto";

import { Client, Metadata, ServiceError } from "@grpc/grpc-js";

import { fromServiceError } from "./errors";
import { ClientOptions, Resolved, resolve } from "./options";
import * as embedding from "./gen/vectoros/v1/embedding";
import * as forecast from "./gen/vectoros/v1/forecast";
import * as insight from "./gen/vectoros/v1/insight";
import * as scoring from "./gen/vectoros/v1/scoring";
import * as similarity from "./gen/vectoros/v1/similarity";

export interface CallOptions {
  /** This call's deadline, ms from now (default: the client's). */
  timeoutMs?: number;
  /** The x-request-id to send (default: a random one). */
  requestId?: string;
}

interface MethodDefinition<Request, Response> {
  path: string;
  requestSerialize(value: Request): Buffer;
  responseDeserialize(value: Buffer): Response;
}

interface Codec<Request, Partial> {
  fromPartial(object: Partial): Request;
}

export type UnaryMethod<Partial, Response> = (request: Partial, options?: CallOptions) => Promise<Response>;
export type StreamMethod<Partial, Response> = (request: Partial, options?: CallOptions) => AsyncIterable<Response>;

const newRequestId = (): string => randomBytes(8).toString("hex");

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === "object" && error !== null && "code" in error && "metadata" in error;
}

export class VectorOSClient {
  private readonly resolved: Resolved;
  /** The grpc-js client (and its channel) every call goes through. */
  readonly grpc: Client;
  readonly embedding;
  readonly similarity;
  readonly scoring;
  readonly forecast;
  readonly insight;

  constructor(target: string, options: ClientOptions = {}) {
    this.resolved = resolve(target, options);
    this.grpc = new Client(target, this.resolved.credentials, this.resolved.channelOptions);
    const E = embedding.EmbeddingServiceService;
    this.embedding = {
      embed: this.unary(E.embed, embedding.EmbedRequest),
      embedDeals: this.unary(E.embedDeals, embedding.EmbedDealsRequest),
      getModelInfo: this.unary(E.getModelInfo, embedding.EmbeddingServiceGetModelInfoRequest),
    };
    const S = similarity.SimilarityServiceService;
    this.similarity = {
      upsertDeals: this.unary(S.upsertDeals, similarity.UpsertDealsRequest),
      deleteDeals: this.unary(S.deleteDeals, similarity.DeleteDealsRequest),
      findSimilarDeals: this.unary(S.findSimilarDeals, similarity.FindSimilarDealsRequest),
      getStats: this.unary(S.getStats, similarity.GetStatsRequest),
    };
    const C = scoring.ScoringServiceService;
    this.scoring = {
      scoreDeal: this.unary(C.scoreDeal, scoring.ScoreDealRequest),
      scoreDeals: this.unary(C.scoreDeals, scoring.ScoreDealsRequest),
      getModelInfo: this.unary(C.getModelInfo, scoring.ScoringServiceGetModelInfoRequest),
    };
    const F = forecast.ForecastServiceService;
    this.forecast = {
      forecast: this.unary(F.forecast, forecast.ForecastRequest),
      compareScenarios: this.unary(F.compareScenarios, forecast.CompareScenariosRequest),
    };
    const I = insight.InsightServiceService;
    this.insight = {
      /** Never retried: each call stores a new insight set. */
      generateInsights: this.unary(I.generateInsights, insight.GenerateInsightsRequest),
      recordFeedback: this.unary(I.recordFeedback, insight.RecordFeedbackRequest),
      recordOutcome: this.unary(I.recordOutcome, insight.RecordOutcomeRequest),
      scanPipeline: this.unary(I.scanPipeline, insight.ScanPipelineRequest),
      /** JSON Lines in chunks; the deadline is the client's streamTimeoutMs. Breaking out cancels the call. */
      exportTrainingData: this.stream(I.exportTrainingData, insight.ExportTrainingDataRequest),
    };
  }

  private metadata(requestId: string): Metadata {
    const metadata = new Metadata({ waitForReady: this.resolved.waitForReady });
    metadata.set("x-request-id", requestId);
    if (this.resolved.token !== undefined) metadata.set("authorization", `Bearer ${this.resolved.token}`);
    return metadata;
  }

  private deadline(options: CallOptions, fallback: number): Date {
    const ms = options.timeoutMs ?? fallback;
    if (!(typeof ms === "number" && Number.isFinite(ms) && ms > 0)) {
      throw new Error(`timeoutMs: must be a number of milliseconds > 0, got ${ms}`);
    }
    return new Date(Date.now() + ms);
  }

  private unary<Request, Response, Partial>(
    definition: MethodDefinition<Request, Response>, codec: Codec<Request, Partial>,
  ): UnaryMethod<Partial, Response> {
    return (request, options = {}) => this.invoke(definition.path, codec.fromPartial(request),
      definition.requestSerialize, definition.responseDeserialize, options);
  }

  private invoke<Request, Response>(
    path: string, request: Request, serialize: (value: Request) => Buffer,
    deserialize: (value: Buffer) => Response, options: CallOptions,
  ): Promise<Response> {
    return new Promise((resolvePromise, reject) => {
      const requestId = options.requestId ?? newRequestId();
      this.grpc.makeUnaryRequest(path, serialize, deserialize, request, this.metadata(requestId),
        { deadline: this.deadline(options, this.resolved.timeoutMs) },
        (error, response) => {
          if (error) reject(fromServiceError(error, path, requestId));
          else resolvePromise(response as Response);
        });
    });
  }

  private stream<Request, Response, Partial>(
    definition: MethodDefinition<Request, Response>, codec: Codec<Request, Partial>,
  ): StreamMethod<Partial, Response> {
    return (request, options = {}) => {
      const requestId = options.requestId ?? newRequestId();
      const call = this.grpc.makeServerStreamRequest(definition.path, definition.requestSerialize,
        definition.responseDeserialize, codec.fromPartial(request), this.metadata(requestId),
        { deadline: this.deadline(options, this.resolved.streamTimeoutMs) });
      return (async function* () {
        try {
          for await (const response of call) yield response as Response;
        } catch (error) {
          throw isServiceError(error) ? fromServiceError(error, definition.path, requestId) : error;
        } finally {
          call.cancel();
        }
      })();
    };
  }

  /** Any unary RPC by its path, request and response as encoded bytes, with this client's
   * deadline, token and errors: for methods this client does not know yet. */
  callRaw(path: string, request: Uint8Array, options: CallOptions = {}): Promise<Buffer> {
    return this.invoke(path, Buffer.from(request), (value) => value, (value) => value, options);
  }

  close(): void {
    this.grpc.close();
  }
}
