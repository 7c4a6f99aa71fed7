import { Forkyard, ForkyardError, type FileEntry } from "@forkyard/sdk";

const fy = new Forkyard();
const inst = await fy.instances.get("inst_123");
await inst.files.write("/work/app.py", "print('hi')\n", { mode: 0o644 });
const edit = await inst.files.edit("/work/app.py", "hi", "hello");
const entries: FileEntry[] = await inst.files.list("/work", { depth: 2 });
const cp = await inst.checkpoint("before");
try {
  await inst.rollback(cp);
} catch (err) {
  if (err instanceof ForkyardError) console.error(err.code, err.status);
}
const kids = await inst.fork(3, { name_prefix: "try" });
for await (const c of inst.checkpoints()) console.log(c.id, c.reason);
const keys = await fy.request<{ data: { id: string }[] }>("GET", "/v1/api-keys", { query: { limit: 10 } });
console.log(edit.replaced, entries.length, kids.length, keys.data.length);
