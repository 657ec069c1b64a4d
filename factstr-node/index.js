'use strict'
// The public API of @factstr/factstr-node. See index.d.ts for documentation.

const { performance } = require('node:perf_hooks')
const { NativeCalls, NativeStore } = require('./binding.js').loadAddon()

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
  return unwrapParsed(JSON.parse(envelope))
}

function unwrapParsed(parsed) {
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

function isWholeNumber(value, least) {
  return typeof value === 'bigint' ? value >= BigInt(least) : Number.isSafeInteger(value) && value >= least
}

/**
 * The query and limit of a page read: `{ limit, after? }`, where `after`
 * (when given) replaces the query's `min_sequence_number`.
 */
function pageArguments(query, options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidInput('options', `expected { limit, after? }, got ${describeType(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (key !== 'limit' && key !== 'after') {
      throw invalidInput(`options.${key}`, 'unknown field; expected limit and after')
    }
  }
  const { limit, after } = options
  if (!isWholeNumber(limit, 1) || limit > Number.MAX_SAFE_INTEGER) {
    throw invalidInput('options.limit', `expected a whole number of at least 1, got ${String(limit)}`)
  }
  if (after !== undefined && after !== null && !isWholeNumber(after, 0)) {
    throw invalidInput('options.after', `expected a non-negative whole number or null, got ${String(after)}`)
  }
  return { query: optional(query), limit: Number(limit), after: optional(after) }
}

/** `query` reading after `after`; a query the addon cannot read goes on unchanged, for it to name. */
function afterCursor(query, after) {
  if (after === null) return query
  if (query === null) return { min_sequence_number: after }
  if (typeof query !== 'object' || Array.isArray(query)) return query
  return { ...query, min_sequence_number: after }
}

/**
 * Whether `page`, read with at most `limit` records, is the last one: the
 * same rule as factstr's QueryPages (fewer records than asked for, or the
 * last one is the newest matching fact).
 */
function isLastPage(page, limit) {
  const last = page.last_returned_sequence_number
  return (
    page.event_records.length < limit ||
    last === null ||
    (page.current_context_version !== null && last >= page.current_context_version)
  )
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

// `refusal()`, when given, is checked before each call: a message there fails
// the batch without calling the handler.
function wrapHandler(handler, refusal) {
  if (typeof handler !== 'function') {
    throw invalidInput('handler', `expected a function, got ${describeType(handler)}`)
  }
  return async (batchJson) => {
    const refused = refusal?.()
    if (refused) return refused
    try {
      await handler(reviveRecords(JSON.parse(batchJson)))
      return null
    } catch (error) {
      return describeFailure(error)
    }
  }
}

// 0.3 took a durable stream as `{ name }`; 0.6 takes the name itself. Both work.
function durableName(name) {
  if (typeof name === 'string') return name
  if (name !== null && typeof name === 'object' && typeof name.name === 'string') return name.name
  throw invalidInput('name', `expected a string or { name: string }, got ${describeType(name)}`)
}

function checkString(field, value) {
  if (typeof value !== 'string') throw invalidInput(field, `expected a string, got ${describeType(value)}`)
  return value
}

// Asynchronous calls. Each gets an id and a function that settles it with
// its result envelope; the addon does the work on its own threads and hands
// results back in slices (see src/calls.rs). A slice is sized so that
// settling it, with the continuations it resumes, takes about SLICE_MS; the
// next slice is taken on the next turn of the event loop, until none is
// left (then the addon wakes us for the next result). Thousands of
// completions never hold the loop in one long turn, and timers and I/O run
// between slices.
const SLICE_MS = 3
const waiting = new Map()
let nextCall = 1
let costPerCallMs = 0.02
let sliceSize = Math.floor(SLICE_MS / costPerCallMs)

// The addon's wake-up never keeps the process alive on its own; this timer
// does, while calls are waiting (ref'd then, unref'd otherwise).
const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
keepAlive.unref()

function expectCall(settle) {
  const id = nextCall++
  waiting.set(id, settle)
  if (waiting.size === 1) keepAlive.ref()
  return id
}

function forgetCall(id) {
  if (waiting.delete(id) && waiting.size === 0) keepAlive.unref()
}

function settleSlice() {
  const started = performance.now()
  const text = calls.take(sliceSize)
  if (text === null) return
  const settled = JSON.parse(text)
  for (const [id, envelope] of settled) {
    const settle = waiting.get(id)
    if (settle === undefined) continue
    forgetCall(id)
    settle(envelope)
  }
  setImmediate(settleSlice)
  // Runs after the continuations the slice resumed: learn what a call costs.
  queueMicrotask(() => {
    const perCall = (performance.now() - started) / settled.length
    costPerCallMs += (perCall - costPerCallMs) / 4
    sliceSize = Math.max(16, Math.min(4096, Math.floor(SLICE_MS / costPerCallMs)))
  })
}

const calls = new NativeCalls(settleSlice)

/** A promise of call `start(id)`'s result, revived; input errors reject it. */
function callAsync(start, revive) {
  return new Promise((resolve, reject) => {
    const id = expectCall((envelope) => {
      try {
        resolve(revive(unwrapParsed(envelope)))
      } catch (error) {
        reject(error)
      }
    })
    try {
      start(id)
    } catch (error) {
      forgetCall(id)
      reject(error)
    }
  })
}

/** A promise of a stream's stop, settled by the addon once the stream is registered and stops. */
function expectStop() {
  let resolveStopped
  const stopped = new Promise((resolve) => {
    resolveStopped = resolve
  })
  const id = expectCall((envelope) => resolveStopped(reviveStop(envelope.ok)))
  return { id, stopped }
}

function reviveStop(stop) {
  if (stop.first_sequence_number !== undefined) stop.first_sequence_number = BigInt(stop.first_sequence_number)
  return Object.freeze(stop)
}

/** A registered stream; `unsubscribe()` stops it, `stopped` says when and why it stopped. */
class FactstrSubscription {
  #native
  #id
  #stopped
  #stop = null
  constructor(nativeStore, id, stopped) {
    this.#native = nativeStore
    this.#id = id
    this.#stopped = stopped
    stopped.then((stop) => {
      this.#stop = stop
    })
  }
  /** The stream's id, distinct among the streams of one store. */
  get id() {
    return BigInt(this.#id)
  }
  /** Stops deliveries of batches committed from now on; calling it again does nothing. */
  unsubscribe() {
    this.#native.unsubscribe(Number(this.#id))
  }
  /** Resolves with the reason once the stream has stopped; never rejects. */
  get stopped() {
    return this.#stopped
  }
  /** `true` until `stopped` has resolved. */
  get isRunning() {
    return this.#stop === null
  }
  /** The reason `stopped` resolved with, `null` before. */
  get stopReason() {
    return this.#stop
  }
}

const OPEN = Symbol('factstr.open')

/** A native store opened by `open(nativeStore)`, or the error it reported. */
function openNative(open) {
  const nativeStore = new NativeStore(calls)
  unwrap(open(nativeStore))
  return nativeStore
}

function bootstrapOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw invalidInput('options', `expected { serverUrl, databaseName }, got ${describeType(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (key !== 'serverUrl' && key !== 'databaseName') {
      throw invalidInput(`options.${key}`, 'unknown field; expected serverUrl and databaseName')
    }
  }
  return {
    serverUrl: checkString('options.serverUrl', options.serverUrl),
    databaseName: checkString('options.databaseName', options.databaseName),
  }
}

class FactstrStore {
  #native
  #closed
  constructor(token, nativeStore) {
    if (token !== OPEN) {
      throw new FactstrInputError(
        `${new.target.name} cannot be constructed: open a store with new FactstrMemoryStore(), ` +
          'FactstrSqliteStore.open(path) or FactstrPostgresStore.connect(url)',
      )
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

  queryPage(query, options) {
    const page = pageArguments(query, options)
    const envelope = native('query', () => this.#native.queryPage(afterCursor(page.query, page.after), page.limit))
    return reviveQueryResult(unwrap(envelope))
  }

  appendAsync(events) {
    return callAsync((id) => this.#native.appendAsync(id, eventsJson(events)), reviveAppendResult)
  }

  queryAsync(query) {
    return callAsync((id) => native('query', () => this.#native.queryAsync(id, optional(query))), reviveQueryResult)
  }

  queryPageAsync(query, options) {
    return new Promise((resolve) => {
      const page = pageArguments(query, options)
      resolve(this.#queryPageAsync(afterCursor(page.query, page.after), page.limit))
    })
  }

  queryPages(query, options) {
    const page = pageArguments(query, options)
    return this.#pages(page.query, page.limit, page.after)
  }

  #queryPageAsync(query, limit) {
    return callAsync((id) => native('query', () => this.#native.queryPageAsync(id, query, limit)), reviveQueryResult)
  }

  // One page in memory at a time: the next is read when the loop asks for it.
  async *#pages(query, limit, after) {
    let cursor = after
    for (;;) {
      const page = await this.#queryPageAsync(afterCursor(query, cursor), limit)
      if (page.event_records.length === 0) return
      yield page
      if (isLastPage(page, limit)) return
      cursor = page.last_returned_sequence_number
    }
  }

  appendIfAsync(events, query, expectedContextVersion) {
    return callAsync((id) => {
      const json = eventsJson(events)
      native('query', () => this.#native.appendIfAsync(id, json, optional(query), optional(expectedContextVersion)))
    }, reviveAppendIfResult)
  }

  streamAll(handler) {
    const wrapped = wrapHandler(handler)
    return this.#registerLive((stopCall) => this.#native.streamAll(stopCall, wrapped))
  }

  streamTo(query, handler) {
    const wrapped = wrapHandler(handler)
    return this.#registerLive((stopCall) => native('query', () => this.#native.streamTo(stopCall, optional(query), wrapped)))
  }

  streamAllDurable(name, handler) {
    return this.#registerDurable(handler, (call, stopCall, wrapped) =>
      this.#native.streamAllDurable(call, stopCall, durableName(name), wrapped),
    )
  }

  streamToDurable(name, query, handler) {
    return this.#registerDurable(handler, (call, stopCall, wrapped) => {
      const checked = durableName(name)
      native('query', () => this.#native.streamToDurable(call, stopCall, checked, optional(query), wrapped))
    })
  }

  #registerLive(start) {
    const stop = expectStop()
    try {
      const { id } = unwrap(start(stop.id))
      return new FactstrSubscription(this.#native, id, stop.stopped)
    } catch (error) {
      forgetCall(stop.id)
      throw error
    }
  }

  #registerDurable(handler, start) {
    return new Promise((resolve, reject) => {
      // Closing waits for a registration to finish its replay: once the
      // store is closed, the replay ends after the handler call in progress
      // (the cursor stays after the last batch handled) instead of running on.
      let replaying = true
      const wrapped = wrapHandler(handler, () =>
        replaying && !this.#native.isOpen ? 'the store was closed during the replay' : null,
      )
      const stop = expectStop()
      const call = expectCall((envelope) => {
        replaying = false
        try {
          const { id } = unwrapParsed(envelope)
          resolve(new FactstrSubscription(this.#native, id, stop.stopped))
        } catch (error) {
          forgetCall(stop.id)
          reject(error)
        }
      })
      try {
        start(call, stop.id, wrapped)
      } catch (error) {
        forgetCall(call)
        forgetCall(stop.id)
        reject(error)
      }
    })
  }

  close() {
    if (this.#closed === undefined) {
      this.#closed = new Promise((resolve) => {
        this.#native.close(expectCall(() => resolve()))
      })
    }
    return this.#closed
  }

  get isOpen() {
    return this.#native.isOpen
  }
}

class FactstrMemoryStore extends FactstrStore {
  constructor() {
    super(OPEN, openNative((nativeStore) => nativeStore.openMemory()))
  }
}

class FactstrSqliteStore extends FactstrStore {
  /** `new FactstrSqliteStore(path)` (as in 0.3) is `FactstrSqliteStore.open(path)`. */
  constructor(path) {
    checkString('path', path)
    super(OPEN, openNative((nativeStore) => nativeStore.openSqlite(path)))
  }

  static open(path) {
    return new FactstrSqliteStore(path)
  }
}

class FactstrPostgresStore extends FactstrStore {
  /** `new FactstrPostgresStore(url)` (as in 0.3) is `FactstrPostgresStore.connect(url)`. */
  constructor(url, bootstrapped) {
    const nativeStore =
      url === OPEN ? bootstrapped : openNative((opening) => opening.connectPostgres(checkString('url', url)))
    super(OPEN, nativeStore)
  }

  static connect(url) {
    return new FactstrPostgresStore(url)
  }

  static bootstrap(options) {
    const { serverUrl, databaseName } = bootstrapOptions(options)
    return new FactstrPostgresStore(
      OPEN,
      openNative((nativeStore) => nativeStore.bootstrapPostgres(serverUrl, databaseName)),
    )
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
