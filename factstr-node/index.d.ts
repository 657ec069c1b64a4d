/**
 * FACTSTR for Node.js and TypeScript: an event store where facts are appended
 * to one log with global sequence numbers, commands read the facts relevant
 * to them and append only if that context is unchanged (`appendIf`), and read
 * models stay current through live and durable streams.
 *
 * Field names are snake_case, as in the Rust API. Sequence numbers are
 * `bigint`. Wherever a type says `| null` or `?`, both `null` and `undefined`
 * are accepted. Inputs accept any payload a TypeScript type describes
 * (`unknown`); outputs say exactly what comes back (`JsonValue`, and `null`
 * fields are present rather than left out).
 *
 * @packageDocumentation
 */

/** A JSON value: what a stored payload reads back as (`JSON.parse` of what was appended). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/**
 * A fact to append. `Payload` documents the payload's shape
 * (`NewEvent<Deposited>`); any value is accepted, including an `interface`
 * or a `Record<string, unknown>`.
 */
export interface NewEvent<Payload = unknown> {
  /** The kind of fact, e.g. `"account-opened"`. Must not be empty. */
  event_type: string
  /**
   * Stored as `JSON.stringify` writes it (a `Date` becomes its ISO string,
   * `undefined` fields are left out); absent means `null`. A `bigint`
   * anywhere inside is refused with `FACTSTR_INVALID_INPUT`.
   */
  payload?: Payload
}

/** A committed fact. */
export interface EventRecord {
  /** Global position in the log: starts at 1, no gaps. */
  sequence_number: bigint
  /** Commit time: RFC 3339, UTC, microseconds (`2026-01-02T03:04:05.123456Z`); shared by a batch. */
  occurred_at: string
  /** The event type given at append. */
  event_type: string
  /** The payload given at append (as `JSON.parse` gives it). */
  payload: JsonValue
}

/**
 * One alternative of a query: its event-type part AND its payload part must match.
 *
 * - `event_types`: absent/`null` accepts any type; `[]` matches nothing; otherwise one of the listed types (exact, case-sensitive).
 * - `payload_predicates`: absent/`null` accepts any payload; `[]` matches nothing; otherwise at least one predicate
 *   must match as a recursive subset: scalars equal, object predicates need every key (extra payload keys are fine),
 *   array predicates need each element somewhere in the payload array.
 */
export interface EventFilter {
  event_types?: readonly string[] | null
  /** JSON values (any value a type describes, compared as `JSON.stringify` writes it). */
  payload_predicates?: readonly unknown[] | null
}

/** Which facts a query, a conditional append's context or a stream is about. */
export interface EventQuery {
  /** Alternatives (OR); absent, `null` or `[]` match every event. */
  filters?: readonly EventFilter[] | null
  /** Exclusive read cursor for `query`: only records with a greater sequence number. Ignored by context versions and streams. */
  min_sequence_number?: bigint | number | null
}

/** What `query` returns. */
export interface QueryResult {
  /** Matching records after `min_sequence_number`, ascending. */
  event_records: EventRecord[]
  /** Sequence number of the last returned record, or `null`. */
  last_returned_sequence_number: bigint | null
  /** Greatest sequence number matching the filters (ignoring the cursor), or `null`: pass it to `appendIf`. */
  current_context_version: bigint | null
}

/** How much of a query `queryPage` and `queryPages` read. */
export interface QueryPageOptions {
  /** At most this many records per page: a whole number, at least 1. */
  limit: number | bigint
  /**
   * Read only records after this sequence number (exclusive), in place of
   * the query's `min_sequence_number`: the previous page's
   * `last_returned_sequence_number`. Absent or `null`: the query's own cursor.
   */
  after?: bigint | number | null
}

/** The committed range of a batch. */
export interface AppendResult {
  first_sequence_number: bigint
  last_sequence_number: bigint
  committed_count: bigint
}

/** The versions of a refused conditional append. */
export interface ConditionalAppendConflict {
  expected_context_version: bigint | null
  actual_context_version: bigint | null
}

/** `appendIf` appended: the batch's committed range. */
export interface AppendIfAppended {
  append_result: AppendResult
  conflict?: undefined
}

/** `appendIf` wrote nothing: the context version was not the expected one. */
export interface AppendIfConflicted {
  append_result?: undefined
  conflict: ConditionalAppendConflict
}

/**
 * What `appendIf` returns: exactly one of `append_result` and `conflict` is
 * set, and checking either narrows the type
 * (`if (outcome.conflict) ... else outcome.append_result.last_sequence_number`).
 */
export type AppendIfResult = AppendIfAppended | AppendIfConflicted

/**
 * A stream handler: receives one committed batch at a time, in commit order.
 * The next batch of the same stream waits until the returned promise settles.
 * Throwing or rejecting is a handler failure: a live stream goes on with the
 * next batch; a durable stream stops, keeps its cursor before that batch, and
 * its subscription's `stopped` resolves with `handler_failed`.
 */
export type StreamHandler = (batch: EventRecord[]) => void | Promise<void>

/**
 * Why a stream stopped (`subscription.stopped`):
 *
 * - `unsubscribed`: `unsubscribe()` was called; the batches committed before
 *   it were delivered first;
 * - `store_closed`: the store was closed; the batches committed before
 *   `close()` were delivered first (waiting at most 5 s for handlers);
 * - `handler_failed`: a durable stream's handler threw or rejected on the
 *   batch starting at `first_sequence_number`; the cursor stays before that
 *   batch, so registering the name again redelivers it;
 * - `read_failed`: a stopping stream could not read its last batches from
 *   the store.
 */
export type StreamStop =
  | { readonly reason: 'unsubscribed' }
  | { readonly reason: 'store_closed' }
  | { readonly reason: 'handler_failed'; readonly first_sequence_number: bigint; readonly message: string }
  | { readonly reason: 'read_failed'; readonly message: string }

/** A durable stream's name, as a string or (as in 0.3) as `{ name }`. */
export type DurableStreamName = string | { readonly name: string }

/** Where `FactstrPostgresStore.bootstrap` creates (when missing) and opens the database. */
export interface PostgresBootstrapOptions {
  /** A URL of the server, e.g. `postgres://app@localhost:5432`; its database path, if any, is replaced by `databaseName`, its query parameters are kept. */
  serverUrl: string
  /** The database to create when missing and then use; must match `[A-Za-z_][A-Za-z0-9_]*`. */
  databaseName: string
}

/** The stable codes of store errors (`error.code`). */
export declare const ErrorCode: {
  readonly EmptyAppend: 'FACTSTR_EMPTY_APPEND'
  readonly ConditionalAppendConflict: 'FACTSTR_CONDITIONAL_APPEND_CONFLICT'
  readonly NotImplemented: 'FACTSTR_NOT_IMPLEMENTED'
  readonly BackendFailure: 'FACTSTR_BACKEND_FAILURE'
  readonly InvalidInput: 'FACTSTR_INVALID_INPUT'
}
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * An error reported by a store: `FACTSTR_EMPTY_APPEND`, `FACTSTR_BACKEND_FAILURE`,
 * ... Invalid input is a `FactstrInputError` instead.
 */
export declare class FactstrError extends Error {
  constructor(code: ErrorCode, message: string)
  readonly code: ErrorCode
  /** Set when `code` is `FACTSTR_CONDITIONAL_APPEND_CONFLICT`. */
  readonly expected_context_version?: bigint | null
  /** Set when `code` is `FACTSTR_CONDITIONAL_APPEND_CONFLICT`. */
  readonly actual_context_version?: bigint | null
}

/**
 * Invalid input (wrong types, unknown fields such as a misspelt `eventTypes`,
 * negative sequence numbers, an empty `event_type`): a `TypeError` whose
 * message names the field, with `code: 'FACTSTR_INVALID_INPUT'`.
 */
export declare class FactstrInputError extends TypeError {
  constructor(message: string)
  readonly code: typeof ErrorCode.InvalidInput
}

/** A registered stream. */
export declare class FactstrSubscription {
  private constructor()
  /** Distinct among the streams of one store. */
  readonly id: bigint
  /**
   * Stops deliveries of batches committed from now on; the batches committed
   * before the call are still delivered, then the stream stops (`stopped`
   * resolves). Returns at once; calling it again does nothing. Once every
   * subscription has stopped, the process can exit. A durable stream's name
   * is free once `stopped` has resolved.
   */
  unsubscribe(): void
  /**
   * Resolves once the stream has stopped for good, with the reason; never
   * rejects. A durable stream whose handler fails while live stops on its
   * own: watch this to alert, or to register it again.
   */
  readonly stopped: Promise<StreamStop>
  /** `true` until `stopped` has resolved. */
  readonly isRunning: boolean
  /** What `stopped` resolved with; `null` before. */
  readonly stopReason: StreamStop | null
}

/** The operations every store offers. */
export declare abstract class FactstrStore {
  protected constructor()

  /** Appends a batch; it gets one consecutive range of sequence numbers. Throws `FACTSTR_EMPTY_APPEND` for `[]`. */
  append(events: readonly NewEvent[]): AppendResult
  /** Returns the matching records after `min_sequence_number`, with the context version. */
  query(query?: EventQuery | null): QueryResult
  /**
   * A bounded read: at most `options.limit` of the records `query` would
   * return after `options.after`, with the context version `query` gives
   * (usable with `appendIf`). Continue with `after` set to the page's
   * `last_returned_sequence_number`; the stores read no further than the page.
   */
  queryPage(query: EventQuery | null | undefined, options: QueryPageOptions): QueryResult
  /**
   * Appends only if the context version of `query` (ignoring its
   * `min_sequence_number`) equals `expectedContextVersion`; otherwise returns
   * `{ conflict }` and writes nothing. An absent or `null`
   * `expectedContextVersion` means nothing may match `query` yet; an absent
   * or `null` `query` matches every event.
   */
  appendIf(events: readonly NewEvent[], query?: EventQuery | null, expectedContextVersion?: bigint | number | null): AppendIfResult

  /**
   * `append` off the event loop: on the addon's threads, and settled in
   * slices of at most a few milliseconds per turn of the loop, so many calls
   * in flight never hold it long. Invalid input rejects.
   */
  appendAsync(events: readonly NewEvent[]): Promise<AppendResult>
  /** `query` off the event loop. */
  queryAsync(query?: EventQuery | null): Promise<QueryResult>
  /** `queryPage` off the event loop. */
  queryPageAsync(query: EventQuery | null | undefined, options: QueryPageOptions): Promise<QueryResult>
  /**
   * Every page of `query`, `options.limit` records each at most, read off
   * the event loop one page at a time as the loop asks for it
   * (`for await (const page of store.queryPages(query, { limit: 1000 }))`),
   * so memory holds one page whatever the size of the log. Each page carries
   * the context version of its moment; facts appended meanwhile come in
   * later pages. Ends after the last matching record; invalid `options`
   * throw at once.
   */
  queryPages(query: EventQuery | null | undefined, options: QueryPageOptions): AsyncGenerator<QueryResult, void, undefined>
  /** `appendIf` off the event loop. */
  appendIfAsync(events: readonly NewEvent[], query?: EventQuery | null, expectedContextVersion?: bigint | number | null): Promise<AppendIfResult>

  /**
   * Delivers every batch committed from now on (every batch committed after
   * this returns), one batch per handler call. Registers before it returns:
   * on memory and SQLite that starts the stream's thread; on PostgreSQL it
   * also reads the log's head (one round trip).
   */
  streamAll(handler: StreamHandler): FactstrSubscription
  /** Delivers the matching events of every batch committed from now on; batches without matches are skipped. */
  streamTo(query: EventQuery | null | undefined, handler: StreamHandler): FactstrSubscription
  /**
   * Replays every committed batch after the durable cursor of `name`, then
   * continues live. Resolves once the replay has finished; rejects with
   * `FACTSTR_BACKEND_FAILURE` when a replay handler fails (the cursor stays
   * after the last handled batch), when `name` is already active, or when
   * `name` was registered with another query, or when the store closed
   * meanwhile. The cursor advances only after the handler's promise resolved.
   * The registration waits off the JavaScript thread, which stays free to
   * run the replay's handler calls.
   */
  streamAllDurable(name: DurableStreamName, handler: StreamHandler): Promise<FactstrSubscription>
  /** Like `streamAllDurable`, for the events matching `query`. */
  streamToDurable(name: DurableStreamName, query: EventQuery | null | undefined, handler: StreamHandler): Promise<FactstrSubscription>

  /**
   * Closes the store. From the call on, `isOpen` is `false` and new calls
   * throw (or reject with) `FACTSTR_BACKEND_FAILURE`. Calls already running
   * finish; every stream delivers the batches committed before the call,
   * waiting at most 5 s for handlers still busy (the JavaScript thread stays
   * free to run them), then stops with `store_closed`; SQLite and
   * PostgreSQL write the durable cursors. A durable registration still
   * replaying ends after its handler call in progress and rejects (its
   * cursor stays after the last batch handled). The promise resolves once
   * all that is done and never rejects; calling `close()` again returns the
   * same promise. Awaiting it is optional: a process exits only after its
   * stores have finished closing. A handler may call `close()` on its own
   * store but must not await it: closing waits for that handler.
   */
  close(): Promise<void>
  /** Whether `close()` has not been called. */
  readonly isOpen: boolean
}

/** The in-memory store: for tests and rebuildable data. Durable cursors live as long as the store. */
export declare class FactstrMemoryStore extends FactstrStore {
  constructor()
}

/** The embedded store on SQLite: one file, durable, the default for real use. */
export declare class FactstrSqliteStore extends FactstrStore {
  /** The same as `FactstrSqliteStore.open(path)` (the form 0.3 had). */
  constructor(path: string)
  /** Opens the database at `path`, creating the file and missing folders. */
  static open(path: string): FactstrSqliteStore
}

/** The PostgreSQL store: many processes and machines sharing one log. */
export declare class FactstrPostgresStore extends FactstrStore {
  /** The same as `FactstrPostgresStore.connect(url)` (the form 0.3 had). */
  constructor(url: string)
  /** Connects to the database at `url` (tables live in the schema the connection's `search_path` names). */
  static connect(url: string): FactstrPostgresStore
  /**
   * Creates the database `databaseName` on the server `serverUrl` when it is
   * missing, then connects to it. A name outside `[A-Za-z_][A-Za-z0-9_]*`
   * throws `FACTSTR_INVALID_INPUT`.
   */
  static bootstrap(options: PostgresBootstrapOptions): FactstrPostgresStore
}
