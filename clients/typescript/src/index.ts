/**
 * @vectoros/client: VectorOSClient (./client), its options (./options), the
 * typed errors (./errors), and the messages generated from protos/ by ts-proto.
 */
export { CallOptions, StreamMethod, UnaryMethod, VectorOSClient } from "./client";
export * from "./errors";
export { ClientOptions, DEFAULT_RETRY, RetryPolicy, RPCS, TlsOptions, serviceConfig } from "./options";
export { VERSION } from "./version";
export * as common from "./gen/vectoros/v1/common";
export * as embedding from "./gen/vectoros/v1/embedding";
export * as forecast from "./gen/vectoros/v1/forecast";
export * as insight from "./gen/vectoros/v1/insight";
export * as scoring from "./gen/vectoros/v1/scoring";
export * as similarity from "./gen/vectoros/v1/similarity";
