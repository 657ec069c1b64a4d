'use strict'
// Node overhead on the same stores the Rust benchmark measures:
//
//   node bench/node-overhead.js [--quick]
//
// 1. `append` of 100-event batches from JavaScript, memory and SQLite (Full),
//    with the same events the Rust benchmark appends (compare with its
//    `append batch=100 threads=1` row from the same machine);
// 2. event-loop responsiveness: how late a 1 ms interval timer fires while
//    10,000 `appendAsync` calls run (100 concurrent callers; `--callers N`
//    for another number).
//
// Prints a table; figures are reported, never asserted.

const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { performance } = require('node:perf_hooks')

const { FactstrMemoryStore, FactstrSqliteStore } = require('..')

const quick = process.argv.includes('--quick')
const runMs = quick ? 250 : 2000
const asyncAppends = quick ? 2_000 : 10_000
const callersAt = process.argv.indexOf('--callers')
const callerCount = callersAt > 0 ? Number(process.argv[callersAt + 1]) : 100
if (!Number.isInteger(callerCount) || callerCount < 1 || asyncAppends % callerCount !== 0) {
  console.error(`--callers takes a whole number that divides ${asyncAppends}`)
  process.exit(2)
}

function deposits(thread, round, size) {
  const batch = new Array(size)
  for (let offset = 0; offset < size; offset++) {
    const number = round * size + offset
    batch[offset] = {
      event_type: 'money-deposited',
      payload: { account: `acc-${thread}-${number % 1000}`, amount: number, currency: 'EUR' },
    }
  }
  return batch
}

function appendThroughput(store) {
  const started = performance.now()
  let rounds = 0
  while (performance.now() - started < runMs) {
    store.append(deposits(0, rounds, 100))
    rounds++
  }
  const seconds = (performance.now() - started) / 1000
  return (rounds * 100) / seconds
}

function percentile(sorted, quantile) {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(quantile * sorted.length) - 1))]
}

async function timerLateness(store) {
  const lateness = []
  let expected = performance.now() + 1
  const timer = setInterval(() => {
    const now = performance.now()
    lateness.push(Math.max(0, now - expected))
    expected = now + 1
  }, 1)
  const started = performance.now()
  // Concurrent callers, each awaiting its appends one after another.
  const callers = Array.from({ length: callerCount }, async (_, caller) => {
    for (let n = 0; n < asyncAppends / callerCount; n++) {
      await store.appendAsync([{ event_type: 'pinged', payload: { caller, n } }])
    }
  })
  await Promise.all(callers)
  const seconds = (performance.now() - started) / 1000
  clearInterval(timer)
  lateness.sort((a, b) => a - b)
  return { seconds, ticks: lateness.length, p50: percentile(lateness, 0.5), p99: percentile(lateness, 0.99), max: lateness.at(-1) ?? 0 }
}

async function main() {
  const folder = mkdtempSync(join(tmpdir(), 'factstr-node-bench-'))
  const rows = []
  try {
    const stores = [
      ['memory', () => new FactstrMemoryStore()],
      ['sqlite', () => FactstrSqliteStore.open(join(folder, `bench-${rows.length}.db`))],
    ]
    for (const [name, open] of stores) {
      let store = open()
      const eventsPerSecond = appendThroughput(store)
      store.close()
      rows.push(`${name.padEnd(8)} append batch=100 from JS          ${Math.round(eventsPerSecond).toLocaleString('en').padStart(12)} events/s`)

      store = open()
      const timer = await timerLateness(store)
      store.close()
      rows.push(
        `${name.padEnd(8)} ${asyncAppends} appendAsync (${callerCount} callers) in ${timer.seconds.toFixed(2)} s: 1 ms timer fired ${timer.ticks} times, ` +
          `lateness p50 ${timer.p50.toFixed(2)} ms, p99 ${timer.p99.toFixed(2)} ms, max ${timer.max.toFixed(2)} ms`,
      )
    }
  } finally {
    rmSync(folder, { recursive: true, force: true })
  }
  console.log(`\nNode overhead${quick ? ' (--quick)' : ''}, node ${process.version}\n`)
  for (const row of rows) console.log(row)
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
