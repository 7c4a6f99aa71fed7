import { ForkyardError } from "./errors.js";
import { type HttpClient, type Query, readEvents } from "./http.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];
export type InstanceData = Schemas["InstanceOut"];
export type InstanceCreate = Schemas["InstanceCreate"];
export type ExecRequest = Schemas["ExecRequest"];
export type ExecResultOut = Schemas["ExecResultOut"];
export type FileEntry = Schemas["FileEntry"];
export type EditResult = Schemas["EditResultOut"];
export type Checkpoint = Schemas["CheckpointOut"];
export type RollbackResult = Schemas["RollbackOut"];
export type ForkRequest = Schemas["ForkRequest"];
export type SshAccess = Schemas["SshAccessOut"];

/** One frame of `execStream`: `start`, then `stdout`/`stderr` chunks, then `exit`. */
export type ExecEvent =
  | { type: "start"; id?: string; exec_id: string; pid: number | null }
  | { type: "stdout" | "stderr"; id?: string; data: string; encoding?: "base64" }
  | {
      type: "exit";
      id?: string;
      exec_id: string;
      exit_code: number;
      duration_ms: number;
      timed_out: boolean;
      signal: number | null;
    };

/** Options of exec besides the command (cwd, env, stdin, timeout_s). */
export type ExecOptions = Omit<ExecRequest, "command">;

/** What a finished command left: `exit_code`, `stdout` and `stderr` (text), and the rest. */
export interface ExecResult extends Omit<ExecResultOut, "encoding"> {
  /** `exit_code` is 0. */
  ok: boolean;
}

function fromBase64(text: string): string {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

function execResult(body: ExecResultOut): ExecResult {
  const { encoding, ...rest } = body;
  const decode = encoding === "base64" ? fromBase64 : (s: string) => s;
  return { ...rest, stdout: decode(body.stdout), stderr: decode(body.stderr), ok: body.exit_code === 0 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function pathOf(id: string): string {
  return `/v1/instances/${encodeURIComponent(id)}`;
}

/** `fy.instances`: create, get and list instances. */
export class Instances {
  constructor(private readonly http: HttpClient) {}

  /**
   * Create an instance and wait until it is running (`wait: false`: answer at once, while it
   * is still provisioning). An instance that fails to boot throws `instance_error`.
   */
  async create(
    body: InstanceCreate = {},
    options: { wait?: boolean; timeoutMs?: number } = {},
  ): Promise<Instance> {
    const wait = options.wait ?? true;
    const data = await this.http.request<InstanceData>("POST", "/v1/instances", {
      body,
      query: { wait },
      idempotent: true,
      timeoutMs: options.timeoutMs ?? Math.max(this.http.timeoutMs, 600_000),
    });
    if (wait && data.status === "error") {
      throw new ForkyardError("instance_error", `${data.id} failed: ${data.status_reason}`);
    }
    return new Instance(this.http, data);
  }

  async get(id: string): Promise<Instance> {
    return new Instance(this.http, await this.http.request<InstanceData>("GET", pathOf(id)));
  }

  /** Every instance of the key's org, newest first, a page at a time. */
  async *list(
    filters: { status?: string; label?: string[]; limit?: number } = {},
  ): AsyncGenerator<Instance> {
    for await (const data of this.http.paginate<InstanceData>("/v1/instances", filters as Query)) {
      yield new Instance(this.http, data);
    }
  }
}

/** `inst.files`: read, write, edit and list files inside the instance. */
export class Files {
  constructor(
    private readonly http: HttpClient,
    private readonly base: string,
  ) {}

  /** Write a file (text as UTF-8, bytes as they are); parent directories are made. */
  async write(
    path: string,
    content: string | Uint8Array,
    options: { mode?: number; make_parents?: boolean } = {},
  ): Promise<FileEntry> {
    const body =
      typeof content === "string"
        ? { path, content, encoding: "utf-8" as const, ...options }
        : { path, content: toBase64(content), encoding: "base64" as const, ...options };
    return this.http.request<FileEntry>("POST", `${this.base}/files`, { body, idempotent: true });
  }

  /** A file's bytes. */
  async read(path: string, options: { offset?: number; limit?: number } = {}): Promise<Uint8Array> {
    const response = await this.http.request<Response>("GET", `${this.base}/files`, {
      query: { path, ...options },
      raw: true,
    });
    return new Uint8Array(await response.arrayBuffer());
  }

  /** A file's text (UTF-8). */
  async readText(path: string, options: { offset?: number; limit?: number } = {}): Promise<string> {
    return new TextDecoder().decode(await this.read(path, options));
  }

  /** Replace `oldStr` (which must occur once, unless `replace_all`) with `newStr`. */
  async edit(
    path: string,
    oldStr: string,
    newStr: string,
    options: { replace_all?: boolean } = {},
  ): Promise<EditResult> {
    return this.http.request<EditResult>("POST", `${this.base}/files/edit`, {
      body: { path, old_str: oldStr, new_str: newStr, ...options },
      idempotent: true,
    });
  }

  /** The entries under a directory (`depth` levels down). */
  async list(path = "/", options: { depth?: number } = {}): Promise<FileEntry[]> {
    const page = await this.http.request<{ data: FileEntry[] }>("GET", `${this.base}/files/list`, {
      query: { path, ...options },
    });
    return page.data;
  }
}

/** An instance: its last known state in `data`, and what can be done with it. */
export class Instance {
  readonly id: string;
  readonly files: Files;
  private readonly base: string;

  constructor(
    private readonly http: HttpClient,
    public data: InstanceData,
  ) {
    this.id = data.id;
    this.base = pathOf(data.id);
    this.files = new Files(http, this.base);
  }

  get name(): string {
    return this.data.name;
  }

  get status(): string {
    return this.data.status;
  }

  async refresh(): Promise<this> {
    this.data = await this.http.request<InstanceData>("GET", this.base);
    return this;
  }

  /** Poll until the instance reaches `status`; an instance in `error` throws `instance_error`. */
  async wait(status = "running", timeoutMs = 300_000): Promise<this> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.refresh()).status !== status) {
      if (this.status === "error") {
        throw new ForkyardError("instance_error", `${this.id} failed: ${this.data.status_reason}`);
      }
      if (Date.now() > deadline) {
        throw new ForkyardError("timeout", `${this.id} is ${this.status}, not ${status}`);
      }
      await sleep(50);
    }
    return this;
  }

  /** Change name, labels, env or idle timeout. */
  async update(fields: Schemas["InstanceUpdate"]): Promise<this> {
    this.data = await this.http.request<InstanceData>("PATCH", this.base, { body: fields });
    return this;
  }

  /** Run a command (a shell string, or an argv list) and wait for it to finish. */
  async exec(command: string | string[], options: ExecOptions = {}): Promise<ExecResult> {
    const timeoutMs = options.timeout_s ? options.timeout_s * 1000 + 30_000 : undefined;
    const body = await this.http.request<ExecResultOut>("POST", `${this.base}/exec`, {
      body: { command, ...options },
      idempotent: true,
      timeoutMs: timeoutMs && Math.max(timeoutMs, this.http.timeoutMs),
    });
    return execResult(body);
  }

  /**
   * Run a command and receive its output as it comes. Breaking out of the loop closes the
   * stream, which kills the command. A stream that ends in `error` throws it.
   */
  async *execStream(command: string | string[], options: ExecOptions = {}): AsyncGenerator<ExecEvent> {
    const response = await this.http.request<Response>("POST", `${this.base}/exec/stream`, {
      body: { command, ...options },
      raw: true,
      timeoutMs: 24 * 3600 * 1000,
    });
    if (!response.body) throw new ForkyardError("stream_failed", "The exec stream has no body.");
    for await (const sse of readEvents(response.body)) {
      const data = JSON.parse(sse.data) as Record<string, unknown>;
      if (sse.event === "error") {
        throw new ForkyardError(String(data.code ?? "exec_failed"), String(data.message ?? ""));
      }
      yield { type: sse.event, id: sse.id, ...data } as ExecEvent;
      if (sse.event === "exit") return;
    }
  }

  /** Capture the filesystem as a checkpoint to roll back to or fork from. */
  async checkpoint(name?: string): Promise<Checkpoint> {
    return this.http.request<Checkpoint>("POST", `${this.base}/checkpoints`, {
      body: name === undefined ? {} : { name },
      idempotent: true,
    });
  }

  /** This instance's checkpoints, newest first. */
  checkpoints(): AsyncGenerator<Checkpoint> {
    return this.http.paginate<Checkpoint>(`${this.base}/checkpoints`);
  }

  /** Return the filesystem to a checkpoint (processes restart; memory is not kept). */
  async rollback(checkpoint: Checkpoint | string): Promise<RollbackResult> {
    const checkpoint_id = typeof checkpoint === "string" ? checkpoint : checkpoint.id;
    const result = await this.http.request<RollbackResult>("POST", `${this.base}/rollback`, {
      body: { checkpoint_id },
      idempotent: true,
    });
    this.data = result.instance;
    return result;
  }

  /** `count` new instances with this one's filesystem as it is now, each running. */
  async fork(count = 1, options: Omit<ForkRequest, "count"> = {}): Promise<Instance[]> {
    const result = await this.http.request<Schemas["ForkOut"]>("POST", `${this.base}/fork`, {
      body: { count, ...options },
      query: { wait: true },
      idempotent: true,
      timeoutMs: Math.max(this.http.timeoutMs, 600_000),
    });
    const failed = result.children.filter((c) => c.error).map((c) => c.error);
    const kids = result.children.flatMap((c) => (c.instance ? [new Instance(this.http, c.instance)] : []));
    if (failed.length && !kids.length) {
      throw new ForkyardError("fork_failed", `fork failed: ${failed[0]?.code} ${failed[0]?.message}`);
    }
    return Promise.all(kids.map((k) => (k.status === "running" ? k : k.wait())));
  }

  /**
   * How to ssh in with one of your account's keys: host, port, the command, and the gateway's
   * host key (`forkyard ssh ID` pins it and runs ssh).
   */
  async sshAccess(): Promise<SshAccess> {
    return this.http.request<SshAccess>("GET", `${this.base}/ssh`);
  }

  /** Delete the instance and its checkpoints (already gone is fine). */
  async delete(): Promise<void> {
    try {
      this.data = await this.http.request<InstanceData>("DELETE", this.base, { idempotent: true });
    } catch (err) {
      if (!(err instanceof ForkyardError && err.status === 404)) throw err;
    }
  }
}
