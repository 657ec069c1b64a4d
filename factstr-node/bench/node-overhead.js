'use strict'
// Node overhead on the same stores the Rust benchmark measures:
//
//   node bench/node-overhead.js [--quick] [--package DIR] [--compare DIR]
//
// 1. `append` of 100-event batches from JavaScript, memory and SQLite (Full),
//    with the same events the Rust benchmark appends (compare with its
//    `append batch=100 threads=1` row from the same machine);
// 2. how long the addon holds the event loop: 1, 100 and 2,000 `appendAsync`
//    calls kept in flight (each caller awaits its call, then makes the next)
//    on every store, with `perf_hooks.monitorEventLoopDelay` (resolution 1 ms)
//    and a 1 ms `setInterval` watching the loop. `max delay` is the longest
//    turn of the loop while the calls run (the timer's lateness); `longest gap`
//    the longest time between two ticks of the interval. Measuring starts
//    after the first turn, in which the callers issue their first calls
//    (the callers' own synchronous code; printed as `first turn`).
//
// `--package DIR` measures the package in DIR instead of this one;
// `--compare DIR` runs part 2 for DIR too, alternating with this package in
// the same run (for before/after figures: DIR holds an older checkout of
// factstr-node with its release addon); `--repeat N` measures each row N
// times (alternating again) and prints the median of each figure, and the
// smallest `max delay` (the run least disturbed by other processes). PostgreSQL runs when DATABASE_URL or
// FACTSTR_TEST_DATABASE_URL names a database (the bench appends to it).
//
// Each measurement of part 2 runs in a child process of its own. Figures are
// reported, never asserted.

const { execFileSync } = require('node:child_process')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join, resolve } = require('node:path')
const { monitorEventLoopDelay, performance } = require('node:perf_hooks')

function option(name, fallback) {
  const at = process.argv.indexOf(name)
  return at > 0 ? process.argv[at + 1] : fallback
}

const quick = process.argv.includes('--quick')
const packageDir = resolve(option('--package', join(__dirname, '..')))
const compareDir = option('--compare', null)
const postgresUrl = process.env.DATABASE_URL || process.env.FACTSTR_TEST_DATABASE_URL || null
const IN_FLIGHT = [1, 100, 2000]
const repeat = Number(option('--repeat', '1'))

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

function opener(factstr, store, folder) {
  let opened = 0
  if (store === 'memory') return () => new factstr.FactstrMemoryStore()
  if (store === 'sqlite') return () => factstr.FactstrSqliteStore.open(join(folder, `bench-${process.pid}-${opened++}.db`))
  if (store === 'postgres') return () => factstr.FactstrPostgresStore.connect(postgresUrl)
  throw new Error(`unknown store ${store}`)
}

function appendThroughput(store, runMs) {
  const started = performance.now()
  let rounds = 0
  while (performance.now() - started < runMs) {
    store.append(deposits(0, rounds, 100))
    rounds++
  }
  const seconds = (performance.now() - started) / 1000
  return (rounds * 100) / seconds
}

/** Part 2 in this process: prints one JSON line. */
async function holdChild() {
  const factstr = require(packageDir)
  const storeName = option('--store')
  const inFlight = Number(option('--in-flight'))
  const runMs = Number(option('--ms'))
  const folder = mkdtempSync(join(tmpdir(), 'factstr-node-bench-'))
  const store = opener(factstr, storeName, folder)()
  try {
    // Warm up: the first calls start the threads.
    await Promise.all(Array.from({ length: 10 }, () => store.appendAsync([{ event_type: 'warmed' }])))

    const delay = monitorEventLoopDelay({ resolution: 1 })
    let ticks = 0
    let lastTick = performance.now()
    let longestGap = 0
    const interval = setInterval(() => {
      const now = performance.now()
      longestGap = Math.max(longestGap, now - lastTick)
      lastTick = now
      ticks++
    }, 1)

    let running = true
    let calls = 0
    const firstTurnStarted = performance.now()
    const callers = Array.from({ length: inFlight }, async (_, caller) => {
      for (let n = 0; running; n++) {
        await store.appendAsync([{ event_type: 'pinged', payload: { caller, n } }])
        calls++
      }
    })
    const firstTurnMs = performance.now() - firstTurnStarted
    await new Promise((settle) => setImmediate(settle))

    delay.enable()
    ticks = 0
    lastTick = performance.now()
    longestGap = 0
    const started = performance.now()
    const callsBefore = calls
    setTimeout(() => {
      running = false
    }, runMs)
    await Promise.all(callers)
    const seconds = (performance.now() - started) / 1000
    delay.disable()
    clearInterval(interval)
    const measured = calls - callsBefore
    console.log(
      JSON.stringify({
        calls: measured,
        callsPerSecond: measured / seconds,
        seconds,
        ticks,
        longestGapMs: longestGap,
        delayMaxMs: delay.max / 1e6,
        delayP99Ms: delay.percentile(99) / 1e6,
        firstTurnMs,
      }),
    )
  } finally {
    await store.close()
    rmSync(folder, { recursive: true, force: true })
  }
}

function runHold(dir, store, inFlight, runMs) {
  const output = execFileSync(
    process.execPath,
    [__filename, '--child-hold', '--package', dir, '--store', store, '--in-flight', String(inFlight), '--ms', String(runMs)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  )
  return JSON.parse(output.trim().split('\n').at(-1))
}

function formatNumber(value) {
  return Math.round(value).toLocaleString('en')
}

async function main() {
  const factstr = require(packageDir)
  const folder = mkdtempSync(join(tmpdir(), 'factstr-node-bench-'))
  const stores = ['memory', 'sqlite', ...(postgresUrl ? ['postgres'] : [])]
  const rows = []
  try {
    for (const name of ['memory', 'sqlite']) {
      const store = opener(factstr, name, folder)()
      const eventsPerSecond = appendThroughput(store, quick ? 250 : 2000)
      await store.close()
      rows.push(`${name.padEnd(8)} append batch=100 from JS  ${formatNumber(eventsPerSecond).padStart(12)} events/s`)
    }
  } finally {
    rmSync(folder, { recursive: true, force: true })
  }
  console.log(`\nNode overhead${quick ? ' (--quick)' : ''}, node ${process.version}, package ${packageDir}\n`)
  for (const row of rows) console.log(row)

  const packages = [['this', packageDir]]
  if (compareDir) packages.push(['compare', resolve(compareDir)])
  console.log(
    `\nappendAsync calls kept in flight${compareDir ? `; compare = ${resolve(compareDir)}` : ''}` +
      `${repeat > 1 ? `; median of ${repeat} runs, least max delay last` : ''}\n` +
      'store    in flight package    calls/s   1 ms ticks  max delay  p99 delay  longest gap  first turn' +
      (repeat > 1 ? '  least max' : ''),
  )
  for (const store of stores) {
    for (const inFlight of IN_FLIGHT) {
      const runMs = quick ? 300 : store === 'memory' ? 1000 : 2000
      const runs = new Map(packages.map(([label]) => [label, []]))
      for (let round = 0; round < repeat; round++) {
        const ordered = (inFlight + round) % 2 === 0 ? packages : [...packages].reverse()
        for (const [label, dir] of ordered) runs.get(label).push(runHold(dir, store, inFlight, runMs))
      }
      for (const [label] of packages) {
        const measured = runs.get(label)
        const median = (field) => {
          const sorted = measured.map((figures) => figures[field]).sort((a, b) => a - b)
          return sorted[Math.floor(sorted.length / 2)]
        }
        const least = Math.min(...measured.map((figures) => figures.delayMaxMs))
        console.log(
          `${store.padEnd(8)} ${String(inFlight).padStart(9)} ${label.padEnd(7)} ${formatNumber(median('callsPerSecond')).padStart(10)}` +
            ` ${String(Math.round(median('ticks'))).padStart(12)} ${median('delayMaxMs').toFixed(2).padStart(7)} ms ${median('delayP99Ms').toFixed(2).padStart(7)} ms` +
            ` ${median('longestGapMs').toFixed(2).padStart(9)} ms ${median('firstTurnMs').toFixed(2).padStart(8)} ms` +
            (repeat > 1 ? ` ${least.toFixed(2).padStart(7)} ms` : ''),
        )
      }
    }
  }
}

const run = process.argv.includes('--child-hold') ? holdChild : main
run().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
