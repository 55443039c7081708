/**
 * How the client connects, with the same defaults as the Python client
 * (clients/python/src/vectoros_client/channel.py): a deadline on every call,
 * retries of idempotent RPCs by the gRPC service config, wait-for-ready,
 * keepalive, TLS and mutual TLS, a bearer token.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";

import { ChannelCredentials, ChannelOptions, credentials } from "@grpc/grpc-js";

import { VERSION } from "./version";

const MIB = 1024 * 1024;
/** The server refuses pings more often than every 10 s and closes the connection. */
export const MIN_KEEPALIVE_MS = 10_000;

/** Every RPC of the API and whether a retry is safe (the Python client's `rpcs.ALL`). */
export const RPCS: ReadonlyArray<{ service: string; method: string; idempotent: boolean }> = [
  ["EmbeddingService", "Embed", true], ["EmbeddingService", "EmbedDeals", true],
  ["EmbeddingService", "GetModelInfo", true],
  ["SimilarityService", "UpsertDeals", true], ["SimilarityService", "DeleteDeals", true],
  ["SimilarityService", "FindSimilarDeals", true], ["SimilarityService", "GetStats", true],
  ["ScoringService", "ScoreDeal", true], ["ScoringService", "ScoreDeals", true],
  ["ScoringService", "GetModelInfo", true],
  ["ForecastService", "Forecast", true], ["ForecastService", "CompareScenarios", true],
  // GenerateInsights stores a new insight set per call: never retried.
  ["InsightService", "GenerateInsights", false], ["InsightService", "RecordFeedback", true],
  ["InsightService", "RecordOutcome", true], ["InsightService", "ScanPipeline", true],
  ["InsightService", "ExportTrainingData", true],
].map(([service, method, idempotent]) => ({
  service: `vectoros.v1.${service}`, method: method as string, idempotent: idempotent as boolean,
}));

export interface RetryPolicy {
  /** Attempts in all, 2 to 5 (gRPC's cap). */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  retryableStatusCodes: string[];
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 4, initialBackoffMs: 200, maxBackoffMs: 5_000, multiplier: 2,
  retryableStatusCodes: ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
};

export interface TlsOptions {
  /** PEM of the CA that signed the server's certificate (Buffer, PEM text or a file path); unset: system roots. */
  ca?: Buffer | string;
  /** The client's certificate chain and key, together: mutual TLS. */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** Name checked against the server's certificate instead of the target's host. */
  serverName?: string;
}

export interface ClientOptions {
  /** Bearer token (vos_...), sent on every call; without TLS only to a loopback address. */
  token?: string;
  /** TLS (true: the system's roots). */
  tls?: TlsOptions | boolean;
  /** Deadline of every unary call, ms (30 s); per call: `{ timeoutMs }`. */
  timeoutMs?: number;
  /** Deadline of the streamed export, ms (300 s). */
  streamTimeoutMs?: number;
  /** Wait for the server to become reachable, within the deadline (true). */
  waitForReady?: boolean;
  /** Retries of idempotent calls (the service config); null turns them off. */
  retry?: RetryPolicy | null;
  /** Keepalive ping interval while calls are open, ms (30 s, at least 10 s); null turns it off. */
  keepaliveMs?: number | null;
  /** Largest message either way, MiB (16, the server's default). */
  maxMessageMb?: number;
  /** Send the token without TLS to a non-loopback address (a proxy on the way adds TLS). */
  allowPlaintextToken?: boolean;
  /** Extra grpc-js channel options, applied last. */
  channelOptions?: ChannelOptions;
}

const seconds = (ms: number): string => `${ms / 1000}s`;

/** The gRPC service config: the retry policy on every idempotent RPC. */
export function serviceConfig(retry: RetryPolicy | null): object {
  if (retry === null) return {};
  return {
    methodConfig: [{
      name: RPCS.filter((rpc) => rpc.idempotent).map(({ service, method }) => ({ service, method })),
      retryPolicy: {
        maxAttempts: retry.maxAttempts,
        initialBackoff: seconds(retry.initialBackoffMs),
        maxBackoff: seconds(retry.maxBackoffMs),
        backoffMultiplier: retry.multiplier,
        retryableStatusCodes: retry.retryableStatusCodes,
      },
    }],
    retryThrottling: { maxTokens: 20, tokenRatio: 0.1 },
  };
}

function pem(value: Buffer | string | undefined, name: string): Buffer | undefined {
  if (value === undefined || Buffer.isBuffer(value)) return value;
  if (value.trimStart().startsWith("-----BEGIN")) return Buffer.from(value, "ascii");
  try {
    return readFileSync(value);
  } catch (error) {
    throw new Error(`tls.${name}: cannot read ${JSON.stringify(value)} (${(error as Error).message})`);
  }
}

export function targetHost(target: string): string {
  if (target.startsWith("unix:")) return "localhost";
  const rest = target.includes(":///") ? target.split(":///")[1] : target;
  if (rest.startsWith("[")) return rest.slice(1, rest.indexOf("]"));
  const colon = rest.lastIndexOf(":");
  return colon > 0 && /^\d+$/.test(rest.slice(colon + 1)) ? rest.slice(0, colon) : rest;
}

export function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "ip6-localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return isIP(host) === 6 && (host === "::1" || host === "0:0:0:0:0:0:0:1");
}

function positive(value: number, name: string): number {
  if (!(typeof value === "number" && Number.isFinite(value) && value > 0)) {
    throw new Error(`${name}: must be a number of milliseconds > 0, got ${value}`);
  }
  return value;
}

/** What the client derives from its options, checked once. */
export interface Resolved {
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
  token?: string;
  timeoutMs: number;
  streamTimeoutMs: number;
  waitForReady: boolean;
}

export function resolve(target: string, options: ClientOptions): Resolved {
  if (typeof target !== "string" || !target.trim()) throw new Error("target: must be an address such as '127.0.0.1:50051'");
  const tls = options.tls === true ? {} : options.tls || undefined;
  const { token } = options;
  if (token !== undefined) {
    if (typeof token !== "string" || !token || /\s/.test(token)) {
      throw new Error("token: must be a non-empty string without spaces or line breaks");
    }
    if (!tls && !options.allowPlaintextToken && !isLoopback(targetHost(target))) {
      throw new Error(`token: refusing to send a bearer token without TLS to ${JSON.stringify(target)} (not a ` +
        "loopback address); pass tls, or allowPlaintextToken when a proxy on the way adds TLS");
    }
  }
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
    throw new Error("tls: give cert and key together (mutual TLS), or neither");
  }
  const retry = options.retry === undefined ? DEFAULT_RETRY : options.retry;
  if (retry !== null && !(retry.maxAttempts >= 2 && retry.maxAttempts <= 5)) {
    throw new Error(`retry.maxAttempts: must be 2 to 5 (gRPC's cap), got ${retry.maxAttempts}`);
  }
  const keepaliveMs = options.keepaliveMs === undefined ? 30_000 : options.keepaliveMs;
  if (keepaliveMs !== null && !(keepaliveMs >= MIN_KEEPALIVE_MS)) {
    throw new Error(`keepaliveMs: must be >= ${MIN_KEEPALIVE_MS} (the server closes connections that ping more ` +
      `often) or null, got ${keepaliveMs}`);
  }
  const maxMessageMb = options.maxMessageMb ?? 16;
  if (!(Number.isInteger(maxMessageMb) && maxMessageMb >= 1)) {
    throw new Error(`maxMessageMb: must be a whole number >= 1, got ${maxMessageMb}`);
  }
  const channelOptions: ChannelOptions = {
    "grpc.max_receive_message_length": maxMessageMb * MIB,
    "grpc.max_send_message_length": maxMessageMb * MIB,
    "grpc.primary_user_agent": `vectoros-client-typescript/${VERSION}`,
    "grpc.enable_retries": retry === null ? 0 : 1,
    "grpc.service_config": JSON.stringify(serviceConfig(retry)),
  };
  if (keepaliveMs !== null) {
    Object.assign(channelOptions, {
      "grpc.keepalive_time_ms": keepaliveMs,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 0,
    });
  }
  if (tls?.serverName) channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
  return {
    credentials: tls
      ? credentials.createSsl(pem(tls.ca, "ca") ?? null, pem(tls.key, "key") ?? null, pem(tls.cert, "cert") ?? null)
      : credentials.createInsecure(),
    channelOptions: { ...channelOptions, ...options.channelOptions },
    token,
    timeoutMs: positive(options.timeoutMs ?? 30_000, "timeoutMs"),
    streamTimeoutMs: positive(options.streamTimeoutMs ?? 300_000, "streamTimeoutMs"),
    waitForReady: options.waitForReady ?? true,
  };
}
