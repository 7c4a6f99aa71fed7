import { ConnectionError, ForkyardError, errorFromResponse } from "./errors.js";

export type Query = Record<string, string | number | boolean | string[] | null | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Send an Idempotency-Key and retry on connection errors, 429 and 5xx with the same key. */
  idempotent?: boolean;
  timeoutMs?: number;
  /** Return the Response itself (streams, bytes) instead of its parsed JSON. */
  raw?: boolean;
}

export interface ClientOptions {
  /** A `fy_...` API key; default FORKYARD_API_KEY. */
  apiKey?: string;
  /** Default FORKYARD_BASE_URL, else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** Per request (create with wait and fork take longer); default 120 s. */
  timeoutMs?: number;
  /** Retries of an idempotent request; default 3. */
  maxRetries?: number;
  fetch?: typeof fetch;
}

const RETRY_STATUS = new Set([429, 502, 503, 504]);

function env(name: string): string | undefined {
  // Node has process.env; browsers and other runtimes may not.
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The HTTP layer: auth, JSON, errors, Idempotency-Key retries. */
export class HttpClient {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  private readonly apiKey: string;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env("FORKYARD_API_KEY");
    if (!apiKey) {
      throw new ForkyardError(
        "missing_api_key",
        "Pass { apiKey } or set FORKYARD_API_KEY (make one at /v1/api-keys).",
      );
    }
    this.apiKey = apiKey;
    this.baseUrl = (options.baseUrl ?? env("FORKYARD_BASE_URL") ?? "http://127.0.0.1:8000").replace(
      /\/+$/,
      "",
    );
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  url(path: string, query?: Query): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined || value === null) continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, String(v));
    }
    return url.toString();
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.apiKey}`,
      Accept: "application/json",
    };
    let payload: string | undefined;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(options.body);
    }
    if (options.idempotent) headers["Idempotency-Key"] = crypto.randomUUID();
    const attempts = options.idempotent ? this.maxRetries + 1 : 1;
    const url = this.url(path, options.query);
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers,
          body: payload,
          signal: AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs),
        });
      } catch (cause) {
        if (attempt < attempts) {
          await sleep(backoff(attempt));
          continue;
        }
        const err = new ConnectionError("connection_error", `${method} ${path}: ${String(cause)}`);
        err.name = "ConnectionError";
        throw err;
      }
      if (response.ok) {
        if (options.raw) return response as T;
        return (await response.json()) as T;
      }
      const err = await errorFromResponse(response);
      // The same key replays a finished first attempt, and is 409 while it still runs.
      const retriable = RETRY_STATUS.has(response.status) || err.code === "idempotency_in_progress";
      if (attempt < attempts && retriable) {
        const after = Number(response.headers.get("retry-after"));
        await sleep(Number.isFinite(after) && after > 0 ? after * 1000 : backoff(attempt));
        continue;
      }
      throw err;
    }
  }

  /** Every item of a cursor list, fetching pages as the loop goes. */
  async *paginate<T>(path: string, query: Query = {}): AsyncGenerator<T> {
    let cursor: string | null | undefined;
    do {
      const page = await this.request<{ data: T[]; next_cursor?: string | null }>("GET", path, {
        query: { ...query, cursor },
      });
      yield* page.data;
      cursor = page.next_cursor;
    } while (cursor);
  }
}

function backoff(attempt: number): number {
  return Math.min(200 * 2 ** (attempt - 1), 5_000) * (0.5 + Math.random() / 2);
}

export interface ServerSentEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** Parses a text/event-stream body; keep-alive comments are skipped. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let id: string | undefined;
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "id") id = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) yield { event, id, data: data.join("\n") };
      }
    }
  } finally {
    // Leaving the loop early closes the connection: the server kills the command.
    await reader.cancel().catch(() => undefined);
  }
}
