#!/usr/bin/env node
// Loads @factstr/factstr-node from a folder (the repository's factstr-node/ by
// default, or an installed package) and makes a few calls into the native
// addon: the memory store and the bundled SQLite, which a cross-compiled addon
// must carry too. The release workflow runs it on every platform it builds,
// also in old and musl-based containers; prints one line and exits 0 when the
// addon works.
//
//   node scripts/smoke-test-addon.js [PACKAGE_FOLDER]
'use strict'

const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join, resolve } = require('node:path')
const assert = require('node:assert/strict')

const packageFolder = resolve(process.argv[2] ?? join(__dirname, '..', 'factstr-node'))
const { FactstrMemoryStore, FactstrSqliteStore } = require(packageFolder)

const memory = new FactstrMemoryStore()
memory.append([{ event_type: 'smoke', payload: { n: 1 } }])
assert.equal(memory.query().event_records.length, 1)

const folder = mkdtempSync(join(tmpdir(), 'factstr-smoke-'))
try {
  const sqlite = FactstrSqliteStore.open(join(folder, 'smoke.db'))
  sqlite.append([{ event_type: 'smoke', payload: { n: 1 } }, { event_type: 'smoke', payload: { n: 2 } }])
  assert.equal(sqlite.query().event_records.length, 2)
  sqlite.close()
} finally {
  rmSync(folder, { recursive: true, force: true })
}
console.log(`factstr-node works on ${process.platform}-${process.arch} (Node ${process.versions.node})`)
