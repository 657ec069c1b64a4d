'use strict'
// The public API of @factstr/factstr-node. See index.d.ts for documentation.

const { NativeStore } = require('./binding.js').loadAddon()

const ErrorCode = Object.freeze({
  EmptyAppend: 'FACTSTR_EMPTY_APPEND',
  ConditionalAppendConflict: 'FACTSTR_CONDITIONAL_APPEND_CONFLICT',
  NotImplemented: 'FACTSTR_NOT_IMPLEMENTED',
  BackendFailure: 'FACTSTR_BACKEND_FAILURE',
  InvalidInput: 'FACTSTR_INVALID_INPUT',
})

/** An error from the store; `code` says which kind. */
class FactstrError extends Error {
  constructor(code, message) {
    super(message)
    this.name = 'FactstrError'
    this.code = code
  }
}

/**
 * Invalid input: a `TypeError` (so `instanceof TypeError` holds) that also
 * carries `code: 'FACTSTR_INVALID_INPUT'`; its message names the field.
 */
class FactstrInputError extends TypeError {
  constructor(message) {
    super(message)
    this.code = ErrorCode.InvalidInput
  }
}

function toBigInt(value) {
  return value === null || value === undefined ? null : BigInt(value)
}

function toError(error) {
  if (error.code === ErrorCode.InvalidInput) return new FactstrInputError(error.message)
  const made = new FactstrError(error.code, error.message)
  if (error.code === ErrorCode.ConditionalAppendConflict) {
    made.expected_context_version = toBigInt(error.expected_context_version)
    made.actual_context_version = toBigInt(error.actual_context_version)
  }
  return made
}

function invalidInput(field, problem) {
  return new FactstrInputError(`${field}: ${problem}`)
}

function unwrap(envelope) {
  const parsed = JSON.parse(envelope)
  if (parsed.error) throw toError(parsed.error)
  return parsed.ok
}

function reviveRecords(records) {
  for (const record of records) record.sequence_number = BigInt(record.sequence_number)
  return records
}

function reviveAppendResult(result) {
  return {
    first_sequence_number: BigInt(result.first_sequence_number),
    last_sequence_number: BigInt(result.last_sequence_number),
    committed_count: BigInt(result.committed_count),
  }
}

function reviveQueryResult(result) {
  return {
    event_records: reviveRecords(result.event_records),
    last_returned_sequence_number: toBigInt(result.last_returned_sequence_number),
    current_context_version: toBigInt(result.current_context_version),
  }
}

function reviveAppendIfResult(result) {
  if (result.conflict) {
    return {
      conflict: {
        expected_context_version: toBigInt(result.conflict.expected_context_version),
        actual_context_version: toBigInt(result.conflict.actual_context_version),
      },
    }
  }
  return { append_result: reviveAppendResult(result.append_result) }
}

function eventsJson(events) {
  if (!Array.isArray(events)) {
    throw invalidInput('events', `expected an array of events, got ${describeType(events)}`)
  }
  try {
    return JSON.stringify(events)
  } catch (error) {
    throw invalidInput('events', `cannot be written as JSON: ${error.message}`)
  }
}

function describeType(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

function optional(value) {
  return value === undefined ? null : value
}

// Arguments the native layer cannot convert (a function or a symbol inside a
// query, say) are reported as invalid input naming the argument.
function native(argument, call) {
  try {
    return call()
  } catch (error) {
    if (error instanceof FactstrInputError || error instanceof FactstrError) throw error
    throw invalidInput(argument, error && error.message ? error.message : String(error))
  }
}

function describeFailure(error) {
  if (error instanceof Error) return error.message || error.name
  try {
    return typeof error === 'string' ? error : JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

function wrapHandler(handler) {
  if (typeof handler !== 'function') {
    throw invalidInput('handler', `expected a function, got ${describeType(handler)}`)
  }
  return async (batchJson) => {
    try {
      await handler(reviveRecords(JSON.parse(batchJson)))
      return null
    } catch (error) {
      return describeFailure(error)
    }
  }
}

function checkName(name) {
  if (typeof name !== 'string') {
    throw invalidInput('name', `expected a string, got ${describeType(name)}`)
  }
  return name
}

/** A registered stream; `unsubscribe()` stops it. */
class FactstrSubscription {
  #native
  #id
  constructor(nativeStore, id) {
    this.#native = nativeStore
    this.#id = id
  }
  /** The stream's id, distinct among the streams of one store. */
  get id() {
    return BigInt(this.#id)
  }
  /** Stops future deliveries; calling it again does nothing. */
  unsubscribe() {
    this.#native.unsubscribe(Number(this.#id))
  }
}

const OPEN = Symbol('factstr.open')

// What to call instead of a constructor that only the package may use
// (0.3 had `new FactstrSqliteStore(path)` and `new FactstrPostgresStore(url)`).
const OPENED_BY = {
  FactstrSqliteStore: 'FactstrSqliteStore.open(path)',
  FactstrPostgresStore: 'FactstrPostgresStore.connect(url)',
}

class FactstrStore {
  #native
  constructor(token, nativeStore) {
    if (token !== OPEN) {
      const opener =
        OPENED_BY[new.target.name] ??
        'new FactstrMemoryStore(), FactstrSqliteStore.open(path) or FactstrPostgresStore.connect(url)'
      throw new FactstrInputError(`${new.target.name} has no public constructor: open a store with ${opener}`)
    }
    this.#native = nativeStore
  }

  append(events) {
    const json = eventsJson(events)
    return reviveAppendResult(unwrap(this.#native.append(json)))
  }

  query(query) {
    return reviveQueryResult(unwrap(native('query', () => this.#native.query(optional(query)))))
  }

  appendIf(events, query, expectedContextVersion) {
    const json = eventsJson(events)
    const envelope = native('query', () =>
      this.#native.appendIf(json, optional(query), optional(expectedContextVersion)),
    )
    return reviveAppendIfResult(unwrap(envelope))
  }

  async appendAsync(events) {
    const json = eventsJson(events)
    return reviveAppendResult(unwrap(await this.#native.appendAsync(json)))
  }

  async queryAsync(query) {
    const envelope = await native('query', () => this.#native.queryAsync(optional(query)))
    return reviveQueryResult(unwrap(envelope))
  }

  async appendIfAsync(events, query, expectedContextVersion) {
    const json = eventsJson(events)
    const envelope = await native('query', () =>
      this.#native.appendIfAsync(json, optional(query), optional(expectedContextVersion)),
    )
    return reviveAppendIfResult(unwrap(envelope))
  }

  streamAll(handler) {
    const { id } = unwrap(this.#native.streamAll(wrapHandler(handler)))
    return new FactstrSubscription(this.#native, id)
  }

  streamTo(query, handler) {
    const wrapped = wrapHandler(handler)
    const { id } = unwrap(native('query', () => this.#native.streamTo(optional(query), wrapped)))
    return new FactstrSubscription(this.#native, id)
  }

  async streamAllDurable(name, handler) {
    const wrapped = wrapHandler(handler)
    const { id } = unwrap(await this.#native.streamAllDurable(checkName(name), wrapped))
    return new FactstrSubscription(this.#native, id)
  }

  async streamToDurable(name, query, handler) {
    const wrapped = wrapHandler(handler)
    checkName(name)
    const envelope = await native('query', () => this.#native.streamToDurable(name, optional(query), wrapped))
    const { id } = unwrap(envelope)
    return new FactstrSubscription(this.#native, id)
  }

  close() {
    this.#native.close()
  }

  get isOpen() {
    return this.#native.isOpen
  }
}

class FactstrMemoryStore extends FactstrStore {
  constructor() {
    const nativeStore = new NativeStore()
    unwrap(nativeStore.openMemory())
    super(OPEN, nativeStore)
  }
}

class FactstrSqliteStore extends FactstrStore {
  static open(path) {
    if (typeof path !== 'string') throw invalidInput('path', `expected a string, got ${describeType(path)}`)
    const nativeStore = new NativeStore()
    unwrap(nativeStore.openSqlite(path))
    return new FactstrSqliteStore(OPEN, nativeStore)
  }
}

class FactstrPostgresStore extends FactstrStore {
  static connect(url) {
    if (typeof url !== 'string') throw invalidInput('url', `expected a string, got ${describeType(url)}`)
    const nativeStore = new NativeStore()
    unwrap(nativeStore.connectPostgres(url))
    return new FactstrPostgresStore(OPEN, nativeStore)
  }
}

module.exports = {
  ErrorCode,
  FactstrError,
  FactstrInputError,
  FactstrMemoryStore,
  FactstrPostgresStore,
  FactstrSqliteStore,
  FactstrStore,
  FactstrSubscription,
}
