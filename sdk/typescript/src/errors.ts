/** Every non-2xx answer of the API, with its stable machine `code` (see the API conventions). */
export class ForkyardError extends Error {
  readonly code: string;
  readonly status: number;
  readonly requestId: string | undefined;
  readonly details: Record<string, unknown>;

  constructor(
    code: string,
    message: string,
    status = 0,
    requestId?: string,
    details: Record<string, unknown> = {},
  ) {
    super(message ? `${code}: ${message}` : code);
    this.name = "ForkyardError";
    this.code = code;
    this.status = status;
    this.requestId = requestId;
    this.details = details;
  }
}

/** 401 `unauthenticated`: no key, or a revoked one. */
export class AuthenticationError extends ForkyardError {}
/** 403 `forbidden`: the key lacks the scope or role. */
export class PermissionDeniedError extends ForkyardError {}
/** 404: unknown or another org's id. */
export class NotFoundError extends ForkyardError {}
/** 409: the request conflicts with the current state (`instance_not_running`, ...). */
export class ConflictError extends ForkyardError {}
/** 422 `validation_failed`: `details.fields` says which fields. */
export class ValidationError extends ForkyardError {}
/** 429: `retryAfter` seconds to wait. */
export class RateLimitError extends ForkyardError {
  retryAfter: number | undefined;
}
/** The connection failed or timed out before an answer arrived. */
export class ConnectionError extends ForkyardError {}

const BY_STATUS: Record<number, typeof ForkyardError> = {
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  422: ValidationError,
  429: RateLimitError,
};

interface ErrorBody {
  error?: {
    code?: string;
    message?: string;
    request_id?: string;
    details?: Record<string, unknown>;
  };
}

/** The error a response stands for, from the shape every error body has. */
export async function errorFromResponse(response: Response): Promise<ForkyardError> {
  let body: ErrorBody = {};
  try {
    body = (await response.json()) as ErrorBody;
  } catch {
    // Not our error shape (a proxy's page): the status says enough.
  }
  const e = body.error ?? {};
  const Cls = BY_STATUS[response.status] ?? ForkyardError;
  const err = new Cls(
    e.code ?? `http_${response.status}`,
    e.message ?? response.statusText,
    response.status,
    e.request_id ?? response.headers.get("x-request-id") ?? undefined,
    e.details ?? {},
  );
  err.name = Cls.name;
  if (err instanceof RateLimitError) {
    const after = Number(response.headers.get("retry-after"));
    err.retryAfter = Number.isFinite(after) ? after : undefined;
  }
  return err;
}
