import { Forkyard } from "@forkyard/sdk";

const fy = new Forkyard({ apiKey: process.env.FORKYARD_API_KEY, baseUrl: "http://127.0.0.1:8000" });
const inst = await fy.instances.get("inst_123");
for await (const ev of inst.execStream(["python3", "-c", "print(1)"], { timeout_s: 30 })) {
  if (ev.type === "stdout" || ev.type === "stderr") process.stdout.write(ev.data);
  if (ev.type === "exit") console.log("exit", ev.exit_code);
}
