// Drives the built SDK against a live server (FORKYARD_API_KEY, FORKYARD_BASE_URL) and prints
// one JSON line per step; tests/sdk_typescript/test_live.py asserts on them.
import { Forkyard, ForkyardError, NotFoundError } from "../dist/index.js";

const out = (step, value) => console.log(JSON.stringify({ step, ...value }));
const fy = new Forkyard();

const inst = await fy.instances.create({ memory_mb: 256, disk_mb: 256 });
out("create", { id: inst.id, status: inst.status });

const r = await inst.exec("echo hello; echo oops >&2; exit 3");
out("exec", { exit_code: r.exit_code, stdout: r.stdout, stderr: r.stderr, ok: r.ok });

const events = [];
let streamed = "";
for await (const ev of inst.execStream(["sh", "-c", "for i in 1 2 3; do echo line$i; done"])) {
  events.push(ev.type);
  if (ev.type === "stdout") streamed += ev.data;
  if (ev.type === "exit") out("stream_exit", { exit_code: ev.exit_code });
}
out("stream", { events: [...new Set(events)], stdout: streamed });

await inst.files.write("/work/app.txt", "version = 1\n");
await inst.files.write("/work/blob.bin", new Uint8Array([0, 255, 1, 254]));
const edit = await inst.files.edit("/work/app.txt", "version = 1", "version = 2");
const text = await inst.files.readText("/work/app.txt");
const blob = Array.from(await inst.files.read("/work/blob.bin"));
const names = (await inst.files.list("/work")).map((e) => e.name).sort();
out("files", { replaced: edit.replaced, text, blob, names });

const cp = await inst.checkpoint("before");
await inst.files.write("/work/app.txt", "broken\n");
const rb = await inst.rollback(cp);
out("rollback", {
  checkpoint: cp.name,
  rolled_back_to: rb.rolled_back_to,
  matches: rb.rolled_back_to === cp.id,
  text: await inst.files.readText("/work/app.txt"),
});
const cps = [];
for await (const c of inst.checkpoints()) cps.push(c.reason);
out("checkpoints", { reasons: cps.sort() });

const kids = await inst.fork(2);
const kidText = await Promise.all(kids.map((k) => k.files.readText("/work/app.txt")));
await kids[0].files.write("/work/app.txt", "child\n");
out("fork", {
  count: kids.length,
  statuses: kids.map((k) => k.status),
  texts: kidText,
  parent_after_child_write: await inst.files.readText("/work/app.txt"),
});

// The generic stream (any SSE endpoint), and how to reach the instance over SSH.
let generic = "";
for await (const ev of fy.stream("POST", `/v1/instances/${inst.id}/exec/stream`, { body: { command: "echo raw" } })) {
  if (ev.event === "stdout") generic += JSON.parse(ev.data).data;
}
const access = await inst.sshAccess();
out("generic", { stdout: generic, ssh_user: access.username, ssh_command: access.command });

const listed = [];
for await (const i of fy.instances.list({ limit: 1 })) listed.push(i.id);
out("list", { count: listed.length, has_parent: listed.includes(inst.id) });

let missing;
try {
  await inst.files.readText("/no/such/file");
} catch (err) {
  missing = { code: err.code, status: err.status, is_error: err instanceof ForkyardError };
}
out("error", missing);

for (const k of kids) await k.delete();
await inst.delete();
let gone;
try {
  await fy.instances.get("inst_doesnotexist");
} catch (err) {
  gone = { code: err.code, not_found: err instanceof NotFoundError };
}
out("delete", { status: inst.status, get_unknown: gone });
