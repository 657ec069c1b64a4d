'use strict'
const { describe, it, after } = require('node:test')
const assert = require('node:assert/strict')
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const { ErrorCode, FactstrInputError, FactstrSqliteStore } = require('..')
const { describeStore, events, recorder, shapes } = require('./behaviours.js')

const folder = mkdtempSync(join(tmpdir(), 'factstr-node-sqlite-'))
after(() => rmSync(folder, { recursive: true, force: true }))
let opened = 0

describeStore('FactstrSqliteStore', () => FactstrSqliteStore.open(join(folder, `store-${opened++}.db`)))

describe('FactstrSqliteStore: persistence', () => {
  it('keeps facts and durable cursors across reopening the file', async () => {
    const path = join(folder, 'nested', 'folder', 'persistent.db')
    let store = FactstrSqliteStore.open(path)
    store.append(events('a', 2))
    const first = recorder()
    const subscription = await store.streamAllDurable('projection', first.handler)
    assert.deepEqual(shapes(first.batches), [[1, 2]])
    subscription.unsubscribe()
    store.append(events('a', 1))
    store.close()

    store = FactstrSqliteStore.open(path)
    assert.equal(store.query().current_context_version, 3n)
    const resumed = recorder()
    const again = await store.streamAllDurable('projection', resumed.handler)
    assert.deepEqual(shapes(resumed.batches), [[3]])
    again.unsubscribe()
    store.close()
  })

  it('a replay ended by close() resumes after the last batch it handled', async () => {
    const path = join(folder, 'closed-during-replay.db')
    let store = FactstrSqliteStore.open(path)
    for (let n = 0; n < 100; n++) store.append(events('a', 1))
    const handled = []
    const replaying = store.streamAllDurable('long-replay', async (batch) => {
      handled.push(Number(batch[0].sequence_number))
      await new Promise((resolve) => setTimeout(resolve, 5))
    })
    while (handled.length < 3) await new Promise((resolve) => setTimeout(resolve, 1))
    const closed = store.close()
    await assert.rejects(replaying, (error) => error.code === ErrorCode.BackendFailure)
    await closed

    store = FactstrSqliteStore.open(path)
    const resumed = recorder()
    const subscription = await store.streamAllDurable('long-replay', resumed.handler)
    assert.equal(resumed.batches[0][0].sequence_number, BigInt(handled.length + 1))
    assert.equal(resumed.batches.length, 100 - handled.length)
    subscription.unsubscribe()
    await store.close()
  })

  it('opens with new FactstrSqliteStore(path), as in 0.3', () => {
    const path = join(folder, 'constructed.db')
    let store = new FactstrSqliteStore(path)
    assert.ok(store instanceof FactstrSqliteStore)
    store.append(events('a', 1))
    store.close()
    store = FactstrSqliteStore.open(path)
    assert.equal(store.query().current_context_version, 1n)
    store.close()
    assert.throws(() => new FactstrSqliteStore(), (error) => error instanceof FactstrInputError && /path/.test(error.message))
  })

  it('refuses a file that is not a FACTSTR database', () => {
    const path = join(folder, 'not-a-database.db')
    writeFileSync(path, 'just some text, not SQLite at all '.repeat(100))
    assert.throws(
      () => FactstrSqliteStore.open(path),
      (error) => [ErrorCode.BackendFailure, ErrorCode.InvalidInput].includes(error.code) && error.message.includes(path),
    )
    assert.throws(() => FactstrSqliteStore.open(42), (error) => error instanceof TypeError && /path/.test(error.message))
  })
})
