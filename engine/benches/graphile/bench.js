// graphile-worker's side of the replicas bench (engine/benches/replicas.rs
// spawns it): DATABASE_URL, JOBS and RATE from the environment; prints one
// JSON line. The worker runs with graphile-worker's defaults (concurrency
// 1, pool of 10, poll 2 s plus LISTEN); only its logger is silenced, so
// stdout carries the JSON alone.
"use strict";
const { run, makeWorkerUtils, Logger } = require("graphile-worker");

const connectionString = process.env.DATABASE_URL;
const jobs = Number(process.env.JOBS || 20000);
const rate = Number(process.env.RATE || 200);
const latencySeconds = Number(process.env.LATENCY_SECONDS || 5);
const inFlight = 32;
const quiet = new Logger(() => () => {});
const now = () => performance.now();

// Per job id: when its addJob resolved, and when its task started.
const acked = new Map();
const started = new Map();
let completed = 0;
let onCompleted = null;

const taskList = {
  noop: async (payload) => {
    started.set(payload.n, now());
  },
};

async function addMany(utils, count, offset) {
  let next = 0;
  const one = async () => {
    while (next < count) {
      const n = offset + next++;
      await utils.addJob("noop", { n });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, one));
}

async function pending(utils) {
  return utils.withPgClient(async (c) => {
    const r = await c.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    return r.rows[0].n;
  });
}

async function untilDrained(utils) {
  while ((await pending(utils)) > 0) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function startWorker() {
  const runner = await run({ connectionString, taskList, logger: quiet, noHandleSignals: true });
  runner.events.on("job:complete", () => {
    completed++;
    if (onCompleted) onCompleted();
  });
  return runner;
}

function pct(sorted, p) {
  return sorted[Math.floor((sorted.length - 1) * p)];
}

async function main() {
  const utils = await makeWorkerUtils({ connectionString, logger: quiet });
  await utils.migrate();
  const version = require("graphile-worker/package.json").version;

  // 1. Enqueue alone, no worker: addJob one by one, 32 in flight.
  let t0 = now();
  await addMany(utils, jobs, 0);
  const enqueueS = (now() - t0) / 1000;

  // 2. Drain with a default worker.
  t0 = now();
  let runner = await startWorker();
  await untilDrained(utils);
  const drainS = (now() - t0) / 1000;
  await runner.stop();

  // 3. Both at once: the worker runs while the jobs are added.
  runner = await startWorker();
  t0 = now();
  const addedAt = now();
  await addMany(utils, jobs, jobs);
  const concurrentSubmitS = (now() - addedAt) / 1000;
  await untilDrained(utils);
  const concurrentS = (now() - t0) / 1000;

  // 4. Latency: RATE jobs/s, one at a time, addJob ack -> task start.
  started.clear();
  const count = Math.round(rate * latencySeconds);
  const gap = 1000 / rate;
  const base = 2 * jobs;
  const begin = now();
  for (let i = 0; i < count; i++) {
    const due = begin + i * gap;
    const wait = due - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await utils.addJob("noop", { n: base + i });
    acked.set(base + i, now());
  }
  await untilDrained(utils);
  await new Promise((r) => setTimeout(r, 100));
  await runner.stop();
  const lat = [];
  for (const [n, t] of acked) {
    const s = started.get(n);
    if (s !== undefined) lat.push(Math.max(0, s - t));
  }
  lat.sort((a, b) => a - b);
  await utils.release();

  console.log(
    JSON.stringify({
      version,
      jobs,
      enqueue_per_s: jobs / enqueueS,
      complete_per_s: jobs / drainS,
      sequential_lifecycle_per_s: jobs / (enqueueS + drainS),
      concurrent_submit_per_s: jobs / concurrentSubmitS,
      concurrent_lifecycle_per_s: jobs / concurrentS,
      latency_rate: rate,
      latency_jobs: lat.length,
      latency_p50_ms: pct(lat, 0.5),
      latency_p99_ms: pct(lat, 0.99),
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
