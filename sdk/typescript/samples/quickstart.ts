import { Forkyard } from "@forkyard/sdk";

const fy = new Forkyard();
const inst = await fy.instances.create({ memory_mb: 512 });
const result = await inst.exec("uname -a");
console.log(result.exit_code, result.stdout);
await inst.delete();
