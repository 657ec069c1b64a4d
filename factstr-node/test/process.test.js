'use strict'
// Process-level behaviour: a process with subscriptions exits once they are
// unsubscribed, and closing stores never crashes it.

const { it } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const { join } = require('node:path')

const packageDir = join(__dirname, '..')

function runScript(source) {
  return spawnSync(process.execPath, ['-e', source], { cwd: packageDir, encoding: 'utf8', timeout: 30_000 })
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
