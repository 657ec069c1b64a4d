'use strict'
// Process-level behaviour: a process with subscriptions exits once they are
// unsubscribed, closing stores never blocks or crashes it, a process that
// exits with open subscriptions and calls in flight exits cleanly, and work
// that waits on JavaScript never starves the calls it waits for.

const { it } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const packageDir = join(__dirname, '..')

function runScript(source) {
  return spawnSync(process.execPath, ['-e', source], { cwd: packageDir, encoding: 'utf8', timeout: 30_000 })
}

function assertCleanExit(result, status = 0) {
  assert.equal(result.error, undefined, `the process did not finish: ${result.error}`)
  assert.equal(result.signal, null, `killed by ${result.signal}; stderr: ${result.stderr}`)
  assert.equal(result.status, status, result.stderr)
  assert.equal(result.stderr, '')
}

it('a process with live and durable subscriptions exits cleanly once they are unsubscribed', () => {
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    const live = store.streamAll(async (batch) => {
      console.log('live', batch.length)
      live.unsubscribe()
    })
    store.streamAllDurable('exits', async (batch) => console.log('durable', batch.length)).then((durable) => {
      store.append([{ event_type: 'a' }, { event_type: 'b' }])
      setTimeout(() => durable.unsubscribe(), 50)
    })
  `)
  assert.equal(result.status, 0, result.stderr)
  assert.equal(result.signal, null)
  assert.match(result.stdout, /live 2/)
  assert.match(result.stdout, /durable 2/)
})

it('closing a store with running subscriptions lets the process exit', () => {
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    store.streamAll(async () => { await new Promise((r) => setTimeout(r, 20)) })
    store.append([{ event_type: 'a' }])
    setTimeout(() => { store.close(); console.log('closed') }, 10)
  `)
  assert.equal(result.status, 0, result.stderr)
  assert.match(result.stdout, /closed/)
})

it('a failing handler never crashes the process', () => {
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    const sub = store.streamAll(() => { throw new Error('boom') })
    const weird = store.streamAll(() => { throw undefined })
    const rejecting = store.streamAll(() => Promise.reject(Symbol('odd')))
    store.append([{ event_type: 'a' }])
    setTimeout(() => { sub.unsubscribe(); weird.unsubscribe(); rejecting.unsubscribe(); console.log('alive') }, 100)
  `)
  assert.equal(result.status, 0, result.stderr)
  assert.match(result.stdout, /alive/)
})

it('close() lets a handler still running settle, delivers what was committed before, and the process exits', () => {
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    let started
    const running = new Promise((resolve) => { started = resolve })
    const subscription = store.streamAll(async (batch) => {
      started()
      await new Promise((resolve) => setTimeout(resolve, 200))
      console.log('handled', String(batch[0].sequence_number))
    })
    store.append([{ event_type: 'a' }])
    store.append([{ event_type: 'a' }])
    running.then(async () => {
      const closed = store.close()
      console.log('close returned')
      await closed
      console.log('closed', (await subscription.stopped).reason)
    })
  `)
  assertCleanExit(result)
  assert.equal(result.stdout, 'close returned\nhandled 1\nhandled 2\nclosed store_closed\n')
})

it('a process that exits with open subscriptions and calls in flight exits cleanly', () => {
  const folder = mkdtempSync(join(tmpdir(), 'factstr-node-exit-'))
  try {
    for (let run = 0; run < 5; run++) {
      const result = runScript(`
        const { FactstrMemoryStore, FactstrSqliteStore } = require('.')
        const stores = [new FactstrMemoryStore(), FactstrSqliteStore.open(${JSON.stringify(join(folder, `exit-${run}.db`))})]
        const slow = () => new Promise((resolve) => setTimeout(resolve, 5))
        for (const store of stores) {
          store.streamAll(slow)
          store.streamTo({ filters: [{ event_types: ['a'] }] }, async () => { throw new Error('fails') })
          store.streamAllDurable('projection', slow)
          for (let n = 0; n < 200; n++) {
            store.appendAsync([{ event_type: 'a', payload: { n } }])
            store.queryAsync()
          }
        }
        setTimeout(() => process.exit(3), ${run * 7})
      `)
      assertCleanExit(result, 3)
    }
  } finally {
    rmSync(folder, { recursive: true, force: true })
  }
})

it('a process waits for its calls in flight and stores closing, then exits', () => {
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    store.streamAll(async () => { await new Promise((resolve) => setTimeout(resolve, 50)); console.log('handled') })
    store.appendAsync([{ event_type: 'a' }]).then((result) => console.log('appended', String(result.last_sequence_number)))
    setTimeout(() => store.close(), 10)
  `)
  assertCleanExit(result)
  assert.equal(result.stdout, 'appended 1\nhandled\n')
})

it('durable replays whose handlers await async calls never starve those calls', () => {
  // Registration waits on JavaScript (the replay runs the handlers); it must
  // not take a thread the handlers' own calls need (libuv has 4).
  const result = runScript(`
    const { FactstrMemoryStore } = require('.')
    const store = new FactstrMemoryStore()
    store.append([{ event_type: 'a' }])
    Promise.all(Array.from({ length: 8 }, (_, n) =>
      store.streamAllDurable('replaying-' + n, async () => { await store.queryAsync(); await store.appendAsync([{ event_type: 'b' }]) }),
    )).then(async (subscriptions) => {
      console.log('registered', subscriptions.length)
      await store.close()
    })
  `)
  assertCleanExit(result)
  assert.equal(result.stdout, 'registered 8\n')
})
