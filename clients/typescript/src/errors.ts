/**
 * The server's errors as typed exceptions, the same as the Python client's:
 * the status code, the message, the field violations of a google.rpc.BadRequest
 * detail, the google.rpc.ErrorInfo (whose metadata names the `field` of a
 * PERMISSION_DENIED), the method and the request id the server logged.
 */
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Metadata, ServiceError, status } from "@grpc/grpc-js";

import { VERSION } from "./version";

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

export interface FieldViolation {
  field: string;
  description: string;
}

export class VectorOSError extends Error {
  /** The gRPC status code (grpc-js `status`). */
  readonly code: status;
  /** The status code's name, for example "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The server's message. */
  readonly details: string;
  /** The RPC, for example "/vectoros.v1.ScoringService/ScoreDeal". */
  readonly method: string;
  /** The x-request-id sent with the call; the server logs the call under it. */
  readonly requestId: string;
  /** google.rpc.BadRequest field violations. */
  readonly fieldViolations: FieldViolation[];
  /** google.rpc.ErrorInfo reason, domain and metadata (empty when not sent). */
  readonly reason: string;
  readonly domain: string;
  readonly errorMetadata: Record<string, string>;
  /** The grpc-js error itself. */
  readonly cause?: ServiceError;

  constructor(code: status, details: string, method: string, requestId: string, trailing?: Metadata,
              cause?: ServiceError) {
    const name = status[code] ?? "UNKNOWN";
    super(`${name}: ${details} [${method}, request ${requestId}]`);
    this.name = new.target.name;
    this.code = code;
    this.codeName = name;
    this.details = details;
    this.method = method;
    this.requestId = requestId;
    this.cause = cause;
    const decoded = decodeDetails(trailing);
    this.fieldViolations = decoded.fieldViolations;
    this.reason = decoded.reason;
    this.domain = decoded.domain;
    this.errorMetadata = decoded.metadata;
  }

  /** The field the server named: the first violation's, else ErrorInfo's `field`. */
  get field(): string | undefined {
    return this.fieldViolations[0]?.field ?? this.errorMetadata["field"];
  }
}

export class InvalidArgumentError extends VectorOSError {}
export class NotFoundError extends VectorOSError {}
export class FailedPreconditionError extends VectorOSError {}
export class PermissionDeniedError extends VectorOSError {}
export class UnauthenticatedError extends VectorOSError {}
export class UnavailableError extends VectorOSError {}
export class ResourceExhaustedError extends VectorOSError {}
export class DeadlineExceededError extends VectorOSError {}
export class CancelledError extends VectorOSError {}
/** The server does not serve the method: it implements an older API than this client. */
export class UnimplementedError extends VectorOSError {}
export class InternalError extends VectorOSError {}

const BY_CODE: Partial<Record<status, typeof VectorOSError>> = {
  [status.INVALID_ARGUMENT]: InvalidArgumentError,
  [status.OUT_OF_RANGE]: InvalidArgumentError,
  [status.NOT_FOUND]: NotFoundError,
  [status.FAILED_PRECONDITION]: FailedPreconditionError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.UNAUTHENTICATED]: UnauthenticatedError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [status.CANCELLED]: CancelledError,
  [status.UNIMPLEMENTED]: UnimplementedError,
};

/** The typed error for a failed grpc-js call. */
export function fromServiceError(error: ServiceError, method: string, requestId: string): VectorOSError {
  const code = typeof error.code === "number" ? error.code : status.UNKNOWN;
  let details = error.details ?? error.message ?? "";
  if (code === status.UNIMPLEMENTED) {
    details =
      `the server does not serve ${method} (${details || "no message"}): it runs an older API than this ` +
      `client (@vectoros/client ${VERSION}); upgrade the server, or use the client release with the server's version`;
  }
  const Kind = BY_CODE[code] ?? InternalError;
  return new Kind(code, details, method, requestId, error.metadata, error);
}

// --- google.rpc.Status, read field by field (the three messages this needs) ---


function readFields(bytes: Uint8Array): Map<number, (Uint8Array | number)[]> {
  const reader = new BinaryReader(bytes);
  const fields = new Map<number, (Uint8Array | number)[]>();
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const [number, wireType] = [tag >>> 3, tag & 7];
    let value: Uint8Array | number;
    if (wireType === 0) value = reader.int32();
    else if (wireType === 2) value = reader.bytes();
    else { reader.skip(wireType); continue; }
    fields.set(number, [...(fields.get(number) ?? []), value]);
  }
  return fields;
}

const text = (value: Uint8Array | number | undefined): string =>
  value instanceof Uint8Array ? Buffer.from(value).toString("utf8") : "";

interface Decoded {
  fieldViolations: FieldViolation[];
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

function decodeDetails(trailing?: Metadata): Decoded {
  const decoded: Decoded = { fieldViolations: [], reason: "", domain: "", metadata: {} };
  const raw = trailing?.get(STATUS_DETAILS_KEY)?.[0];
  if (!(raw instanceof Buffer)) return decoded;
  try {
    for (const any of readFields(raw).get(3) ?? []) {
      if (!(any instanceof Uint8Array)) continue;
      const packed = readFields(any);
      const typeUrl = text(packed.get(1)?.[0]);
      const value = packed.get(2)?.[0];
      if (!(value instanceof Uint8Array)) continue;
      const message = readFields(value);
      if (typeUrl === BAD_REQUEST) {
        for (const violation of message.get(1) ?? []) {
          if (!(violation instanceof Uint8Array)) continue;
          const parts = readFields(violation);
          decoded.fieldViolations.push({ field: text(parts.get(1)?.[0]), description: text(parts.get(2)?.[0]) });
        }
      } else if (typeUrl === ERROR_INFO && !decoded.reason) {
        decoded.reason = text(message.get(1)?.[0]);
        decoded.domain = text(message.get(2)?.[0]);
        for (const entry of message.get(3) ?? []) {
          if (!(entry instanceof Uint8Array)) continue;
          const pair = readFields(entry);
          decoded.metadata[text(pair.get(1)?.[0])] = text(pair.get(2)?.[0]);
        }
      }
    }
  } catch {
    // Details that do not parse are left out; code and message still stand.
  }
  return decoded;
}
