'use strict'
// The error classes as index.d.ts declares them.

const { it } = require('node:test')
const assert = require('node:assert/strict')

const { ErrorCode, FactstrError, FactstrInputError, FactstrMemoryStore } = require('..')

it('FactstrError is constructed with (code, message), as declared', () => {
  const error = new FactstrError(ErrorCode.BackendFailure, 'disk full')
  assert.ok(error instanceof Error)
  assert.equal(error.code, 'FACTSTR_BACKEND_FAILURE')
  assert.equal(error.message, 'disk full')
  assert.equal(error.name, 'FactstrError')
})

it('invalid input is a FactstrInputError: a TypeError with the code FACTSTR_INVALID_INPUT', () => {
  const made = new FactstrInputError('events: expected an array')
  assert.ok(made instanceof TypeError)
  assert.equal(made.code, ErrorCode.InvalidInput)
  assert.equal(made.name, 'TypeError')

  const store = new FactstrMemoryStore()
  for (const action of [
    () => store.append('nope'), // checked in JavaScript
    () => store.query({ filters: [{ eventTypes: ['a'] }] }), // checked by the native decoder
    () => store.query({ filters: [{ payload_predicates: [Symbol('x')] }] }), // refused by Node-API conversion
  ]) {
    assert.throws(action, (error) => error instanceof FactstrInputError && error.code === ErrorCode.InvalidInput)
  }
  store.close()
})

it('FactstrStore is abstract: constructing it names the ways to open a store', () => {
  const { FactstrStore } = require('..')
  assert.throws(
    () => new FactstrStore(),
    (error) =>
      error instanceof FactstrInputError &&
      error.message ===
        'FactstrStore cannot be constructed: open a store with new FactstrMemoryStore(), ' +
          'FactstrSqliteStore.open(path) or FactstrPostgresStore.connect(url)',
  )
})
