// One role of the queue benchmark for one peer system, keeping the contract of questline's
// own `questline-bench queue-role` (crates/bench/src/queue/contract.rs): the same roles and
// flags, `{"ready":true}` once a worker runs, and one JSON result on the last stdout line.
//
//   node peer.mjs --system graphile-worker|pg-boss|bullmq-redis|bullmq-postgres \
//                 --role setup|enqueue|drain|latency-worker|latency-producer \
//                 --url URL --jobs N --concurrency C --rate R
//
// Packages come from the cache run.sh installs into (QUESTLINE_BENCH_PEERS, by default
// ~/.cache/questline-bench/peers), not from next to this file.

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { parseArgs } from 'node:util';

const CACHE = process.env.QUESTLINE_BENCH_PEERS ?? join(homedir(), '.cache/questline-bench/peers');
const req = createRequire(join(CACHE, 'package.json'));
const load = (name) => import(pathToFileURL(req.resolve(name)).href);
const versionOf = (name) => JSON.parse(readFileSync(join(CACHE, 'node_modules', name, 'package.json'))).version;

const { values: opt } = parseArgs({
  options: {
    system: { type: 'string' }, role: { type: 'string' }, url: { type: 'string' },
    jobs: { type: 'string', default: '100000' }, concurrency: { type: 'string', default: '50' },
    rate: { type: 'string', default: '250' }, batch: { type: 'string', default: '1000' },
  },
});
const JOBS = Number(opt.jobs), C = Number(opt.concurrency), RATE = Number(opt.rate), BATCH = Number(opt.batch);
const QUEUE = 'noop';

// Wall-clock microseconds, sub-millisecond, comparable across processes on one machine.
const nowMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

// ---- adapters: setup, enqueueMany, enqueueOne, work(onJob) -> stop, store(), close ----

async function graphile(url) {
  const gw = await load('graphile-worker');
  // Quiet: graphile logs every job at info level otherwise.
  const logger = new gw.Logger(() => (level, message) => { if (level === 'error') console.error(message); });
  const preset = {
    worker: {
      connectionString: url, concurrentJobs: C, maxPoolSize: C + 2, logger,
      // The documented fast path (worker.graphile.org/docs/performance): batch the fetch
      // into a local queue and complete without delay.
      localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0,
    },
  };
  let utils;
  const getUtils = async () => (utils ??= await gw.makeWorkerUtils({ connectionString: url, logger }));
  return {
    version: versionOf('graphile-worker'),
    settings: { concurrentJobs: C, maxPoolSize: C + 2, localQueue: { size: 500 }, completeJobBatchDelay: 0,
                failJobBatchDelay: 0, pollInterval: 'default (2000 ms, LISTEN/NOTIFY wakes)',
                enqueue: `addJobs, ${BATCH} per call; addJob one per call` },
    async setup() { await (await getUtils()).migrate(); },
    async enqueueMany(payloads) {
      await (await getUtils()).addJobs(payloads.map((payload) => ({ identifier: QUEUE, payload })));
    },
    async enqueueOne(payload) { await (await getUtils()).addJob(QUEUE, payload); },
    async work(onJob) {
      const runner = await gw.run({ preset, taskList: { [QUEUE]: async (payload) => { onJob(payload); } } }, undefined);
      return () => runner.stop();
    },
    // A job that succeeds is deleted: what is left is unfinished.
    async store() {
      const u = await getUtils();
      const { rows } = await u.withPgClient((c) => c.query('SELECT count(*)::int AS n FROM graphile_worker._private_jobs'));
      return { completed: null, distinct: null, run_twice: null, unfinished: rows[0].n };
    },
    drained: (s) => s.unfinished === 0,
    async close() { await utils?.release(); },
  };
}

async function pgBoss(url) {
  const { PgBoss } = await load('pg-boss');
  const pg = (await load('pg')).default;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // The documented fast path: LISTEN/NOTIFY on (instance and queue), the shortest polls,
  // batched fetches (batchSize × localConcurrency = the concurrency), burst while full.
  const batchSize = 10, localConcurrency = Math.max(1, Math.round(C / batchSize));
  const work = { batchSize, localConcurrency, burstWhenBatchFull: true,
                 pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 };
  const boss = new PgBoss({ connectionString: url, useListenNotify: true });
  boss.on('error', (e) => console.error('pg-boss:', e.message));
  let started = false;
  const start = async () => { if (!started) { started = true; await boss.start(); } };
  return {
    version: versionOf('pg-boss'),
    settings: { useListenNotify: true, queue: { notify: true }, ...work,
                enqueue: `insert, ${BATCH} per call; send one per call` },
    async setup() { await start(); await boss.createQueue(QUEUE, { notify: true }); },
    async enqueueMany(payloads) { await start(); await boss.insert(QUEUE, payloads.map((data) => ({ data }))); },
    async enqueueOne(payload) { await boss.send(QUEUE, payload); },
    async beforeProduce() { await start(); },
    async work(onJob) {
      await start();
      await boss.work(QUEUE, work, async (jobs) => { for (const j of jobs) onJob(j.data); });
      return () => boss.stop({ graceful: true, wait: true });
    },
    async store() {
      const { rows } = await pool.query(
        `SELECT count(*) FILTER (WHERE state = 'completed')::int AS completed,
                count(DISTINCT data->>'seq') FILTER (WHERE state = 'completed')::int AS distinct,
                count(*) FILTER (WHERE retry_count > 0)::int AS run_twice,
                count(*) FILTER (WHERE state <> 'completed')::int AS unfinished
           FROM pgboss.job WHERE name = $1`, [QUEUE]);
      return rows[0];
    },
    drained: (s) => s.completed >= JOBS,
    async close() { await boss.stop({ graceful: false, wait: true }).catch(() => {}); await pool.end(); },
  };
}

async function bullmq(url, onPostgres) {
  const b = await load('bullmq');
  let connection, factory, prefix;
  if (onPostgres) {
    connection = { connectionString: url, migrate: true };
    factory = b.createPostgresBackend;
  } else {
    const u = new URL(url);
    connection = { host: u.hostname, port: Number(u.port || 6379), db: Number(u.pathname.slice(1) || 0),
                   maxRetriesPerRequest: null };
    // Every key the bench makes starts with this (the orchestrator checks before FLUSHDB).
    prefix = 'qlbench';
  }
  const opts = prefix ? { connection, prefix } : { connection };
  let queue;
  const getQueue = () => (queue ??= factory ? new b.Queue(QUEUE, opts, factory) : new b.Queue(QUEUE, opts));
  return {
    version: versionOf('bullmq'),
    settings: { concurrency: C, removeOnComplete: 'default (kept, so that completions can be counted)',
                backend: onPostgres ? 'createPostgresBackend, migrate: true, pg pool defaults' : 'Redis, prefix qlbench',
                enqueue: `addBulk, ${BATCH} per call; add one per call` },
    async setup() { await getQueue().waitUntilReady(); },
    async enqueueMany(payloads) { await getQueue().addBulk(payloads.map((data) => ({ name: QUEUE, data }))); },
    async enqueueOne(payload) { await getQueue().add(QUEUE, payload); },
    async beforeProduce() { await getQueue().waitUntilReady(); },
    async work(onJob) {
      const wopts = { ...opts, concurrency: C };
      const w = factory ? new b.Worker(QUEUE, async (job) => { onJob(job.data); }, wopts, factory)
                        : new b.Worker(QUEUE, async (job) => { onJob(job.data); }, wopts);
      w.on('error', (e) => console.error('bullmq worker:', e.message));
      await w.waitUntilReady();
      return () => w.close();
    },
    async store() {
      const c = await getQueue().getJobCounts('completed', 'failed', 'active', 'waiting', 'delayed', 'prioritized');
      return { completed: c.completed, distinct: null, run_twice: null,
               unfinished: c.failed + c.active + c.waiting + c.delayed + c.prioritized };
    },
    drained: (s) => s.completed >= JOBS,
    async close() { await queue?.close(); },
  };
}

const systems = {
  'graphile-worker': () => graphile(opt.url),
  'pg-boss': () => pgBoss(opt.url),
  'bullmq-redis': () => bullmq(opt.url, false),
  'bullmq-postgres': () => bullmq(opt.url, true),
};

// ---- roles ----

function seen(expected) {
  const runs = new Uint32Array(expected);
  const s = { handled: 0, first: null, latencyUs: [], done: null };
  s.all = new Promise((r) => { s.done = r; });
  s.onJob = (payload) => {
    const now = nowMicros();
    s.first ??= performance.now();
    if (typeof payload?.t === 'number') s.latencyUs.push(now - payload.t);
    if (Number.isInteger(payload?.seq) && payload.seq < expected) runs[payload.seq]++;
    if (++s.handled >= expected) s.done();
  };
  s.distinct = () => runs.reduce((n, r) => n + (r > 0 ? 1 : 0), 0);
  s.duplicates = () => runs.reduce((n, r) => n + (r > 1 ? r - 1 : 0), 0);
  return s;
}

const roles = {
  async setup(sys) {
    await sys.setup();
    return { role: 'setup', version: `${opt.system} ${sys.version}`, settings: { ...sys.settings, node: process.version } };
  },
  async enqueue(sys) {
    await sys.beforeProduce?.();
    const t0 = performance.now();
    for (let seq = 0; seq < JOBS; seq += BATCH) {
      const n = Math.min(BATCH, JOBS - seq);
      await sys.enqueueMany(Array.from({ length: n }, (_, i) => ({ seq: seq + i })));
    }
    return { role: 'enqueue', jobs: JOBS, secs: (performance.now() - t0) / 1000 };
  },
  async drain(sys) {
    const s = seen(JOBS);
    const stop = await sys.work(s.onJob);
    await s.all;
    // Handled is not done: the drain ends when the store records the last completion.
    let store;
    while (!sys.drained((store = await sys.store()))) await sleep(10);
    const secs = (performance.now() - s.first) / 1000;
    await stop();
    return { role: 'drain', jobs: JOBS, secs, handled: s.handled, distinct: s.distinct(), duplicates: s.duplicates(),
             store: await sys.store() };
  },
  async 'latency-worker'(sys) {
    const s = seen(JOBS);
    const stop = await sys.work(s.onJob);
    process.stdout.write('{"ready":true}\n');
    await s.all;
    await stop();
    return { role: 'latency-worker', jobs: JOBS, handled: s.handled, distinct: s.distinct(),
             duplicates: s.duplicates(), latency_us: s.latencyUs };
  },
  async 'latency-producer'(sys) {
    await sys.beforeProduce?.();
    const start = performance.now() + 20;
    const calls = [], callUs = [];
    let maxLagUs = 0;
    for (let seq = 0; seq < JOBS; seq++) {
      const due = start + (seq * 1000) / RATE;
      await sleep(due - performance.now());
      maxLagUs = Math.max(maxLagUs, Math.round((performance.now() - due) * 1000));
      // Never waits for the previous enqueue: open loop.
      const t = nowMicros(), t0 = performance.now();
      calls.push(sys.enqueueOne({ seq, t }).then(() => callUs.push(Math.round((performance.now() - t0) * 1000))));
    }
    await Promise.all(calls);
    return { role: 'latency-producer', jobs: JOBS, secs: (performance.now() - start) / 1000, max_lag_us: maxLagUs,
             call_us: callUs };
  },
};

const make = systems[opt.system];
const role = roles[opt.role];
if (!make || !role) {
  console.error(`unknown --system ${opt.system} or --role ${opt.role}`);
  process.exit(2);
}
try {
  const sys = await make();
  const out = await role(sys);
  await sys.close();
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
} catch (e) {
  console.error(`${opt.system} ${opt.role}:`, e?.stack ?? e);
  process.exit(1);
}
