'use strict'
// Runs against the throwaway server scripts/test starts (FACTSTR_TEST_DATABASE_URL).
const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')

const { ErrorCode, FactstrInputError, FactstrPostgresStore } = require('..')
const { describeStore, events, recorder, shapes } = require('./behaviours.js')

const url = process.env.FACTSTR_TEST_DATABASE_URL
if (!url) {
  throw new Error(
    'FACTSTR_TEST_DATABASE_URL is not set: run scripts/test, or eval "$(scripts/postgres start)" first',
  )
}

const schemas = []
let counter = 0

function psql(sql) {
  // The same server the store uses; psql ships with the server binaries.
  const bin = process.env.FACTSTR_TEST_PG_CTL ? require('node:path').join(require('node:path').dirname(process.env.FACTSTR_TEST_PG_CTL), 'psql') : 'psql'
  execFileSync(bin, [url, '-qAt', '-c', sql], { encoding: 'utf8' })
}

function freshSchemaUrl() {
  const schema = `node_${process.pid}_${counter++}`
  psql(`CREATE SCHEMA ${schema}`)
  schemas.push(schema)
  return `${url}${url.includes('?') ? '&' : '?'}options=-csearch_path%3D${schema}`
}

const databases = []

after(() => {
  for (const schema of schemas) psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  for (const database of databases) psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
})

describeStore('FactstrPostgresStore', () => FactstrPostgresStore.connect(freshSchemaUrl()))

describe('FactstrPostgresStore: sharing one log', () => {
  let schemaUrl
  before(() => {
    schemaUrl = freshSchemaUrl()
  })

  it('a live stream sees appends made through another connection, and durable names are exclusive', async () => {
    const watcher = FactstrPostgresStore.connect(schemaUrl)
    const writer = FactstrPostgresStore.connect(schemaUrl)
    const live = recorder()
    const subscription = watcher.streamAll(live.handler)
    writer.append(events('a', 2))
    writer.append(events('b', 1))
    await live.untilSequence(3)
    assert.deepEqual(shapes(live.batches), [[1, 2], [3]])

    const durable = await watcher.streamAllDurable('exclusive', async () => {})
    await assert.rejects(writer.streamAllDurable('exclusive', async () => {}), (error) => error.code === ErrorCode.BackendFailure)
    durable.unsubscribe()
    // Another store sees the name free once the stream has stopped.
    assert.deepEqual(await durable.stopped, { reason: 'unsubscribed' })
    const taken = await writer.streamAllDurable('exclusive', async () => {})
    taken.unsubscribe()
    subscription.unsubscribe()
    await Promise.all([watcher.close(), writer.close()])
  })

  it('connects with new FactstrPostgresStore(url), as in 0.3', async () => {
    const store = new FactstrPostgresStore(schemaUrl)
    assert.ok(store instanceof FactstrPostgresStore)
    const before = store.query().current_context_version ?? 0n
    store.append(events('constructed', 1))
    assert.equal(store.query().current_context_version, before + 1n)
    await store.close()
    assert.throws(() => new FactstrPostgresStore(42), (error) => error instanceof FactstrInputError && /url/.test(error.message))
  })

  it('bootstrap({ serverUrl, databaseName }) creates the database when missing, then connects', async () => {
    const databaseName = `factstr_node_bootstrap_${process.pid}`
    databases.push(databaseName)
    const first = FactstrPostgresStore.bootstrap({ serverUrl: url, databaseName })
    first.append(events('booted', 2))
    await first.close()
    const again = FactstrPostgresStore.bootstrap({ serverUrl: url, databaseName })
    assert.equal(again.query().current_context_version, 2n)
    await again.close()

    assert.throws(
      () => FactstrPostgresStore.bootstrap({ serverUrl: url, databaseName: 'no-dashes' }),
      (error) => error instanceof FactstrInputError && error.message.includes('[A-Za-z_][A-Za-z0-9_]*'),
    )
    assert.throws(
      () => FactstrPostgresStore.bootstrap({ serverUrl: url, database_name: databaseName }),
      (error) => error instanceof FactstrInputError && /options\.database_name/.test(error.message),
    )
    assert.throws(() => FactstrPostgresStore.bootstrap(url), (error) => error instanceof FactstrInputError && /options/.test(error.message))
  })

  it('reports a bad URL as a backend failure', () => {
    assert.throws(
      () => FactstrPostgresStore.connect('postgres://nobody@127.0.0.1:1/none?connect_timeout=1'),
      (error) => error.code === ErrorCode.BackendFailure,
    )
  })
})
