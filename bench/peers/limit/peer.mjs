// The limiter benchmark's Redis peer (`questline-bench limit`): rate-limiter-flexible's
// RateLimiterRedis on one key, `--concurrency` consume() calls in flight for `--seconds`.
// Prints one JSON line: decisions, elapsed_ms, each decision's latency (µs) and the caller's
// stamp of each admission (µs, process.hrtime, taken just after the answer).
import Redis from "ioredis";
import { RateLimiterRedis } from "rate-limiter-flexible";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, v, i, all) => (i % 2 ? pairs : [...pairs, [all[i].replace(/^--/, ""), all[i + 1]]]), []),
);
const redis = new Redis(args.url, { enableOfflineQueue: true, maxRetriesPerRequest: 1 });
const limiter = new RateLimiterRedis({
  storeClient: redis,
  keyPrefix: `bench-limit-peer-${process.pid}`,
  points: Number(args.points),
  duration: Number(args.duration),
});
const us = () => Number(process.hrtime.bigint() / 1000n);
const latencies = [];
const admitted = [];
let decisions = 0;
const started = us();
const until = started + Number(args.seconds) * 1e6;

async function worker() {
  while (us() < until) {
    const before = us();
    let ok = false;
    try {
      await limiter.consume("bench");
      ok = true;
    } catch (e) {
      if (e instanceof Error) throw e; // a Redis error, not a refusal
    }
    const after = us();
    decisions += 1;
    latencies.push(after - before);
    if (ok) admitted.push(after - started);
  }
}

await Promise.all(Array.from({ length: Number(args.concurrency) }, worker));
const elapsed_ms = (us() - started) / 1000;
process.stdout.write(JSON.stringify({ decisions, elapsed_ms, latencies_us: latencies, admitted_us: admitted }) + "\n");
redis.disconnect();
