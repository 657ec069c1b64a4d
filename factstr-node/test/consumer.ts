// A TypeScript consumer of the package, type-checked with `tsc --strict`
// (npm run typecheck). It is compiled, never run: it proves index.d.ts
// describes the API the way applications use it.

import {
  type AppendIfResult,
  type AppendResult,
  type EventQuery,
  type EventRecord,
  ErrorCode,
  FactstrError,
  FactstrInputError,
  FactstrMemoryStore,
  FactstrPostgresStore,
  FactstrSqliteStore,
  FactstrStore,
  type FactstrSubscription,
  type JsonValue,
  type NewEvent,
  type QueryPageOptions,
  type QueryResult,
  type StreamStop,
} from '..'

interface Deposited {
  account: string
  amount: number
}

// Payloads typed by an interface, a Record<string, unknown> or a class go in as they are.
function deposit(account: string, amount: number): NewEvent<Deposited> {
  const payload: Deposited = { account, amount }
  return { event_type: 'money-deposited', payload }
}

function audited(details: Record<string, unknown>): NewEvent {
  return { event_type: 'audited', payload: details }
}

class Renamed {
  constructor(readonly account: string, readonly name: string) {}
}

function payloadsOfEveryType(store: FactstrStore): void {
  const byInterface: Deposited = { account: 'a1', amount: 5 }
  const byRecord: Record<string, unknown> = { account: 'a1', note: undefined, at: new Date() }
  const byUnknown: unknown = JSON.parse('{"x": 1}')
  const plain: NewEvent[] = [
    { event_type: 'money-deposited', payload: byInterface },
    { event_type: 'noted', payload: byRecord },
    { event_type: 'parsed', payload: byUnknown },
    { event_type: 'renamed', payload: new Renamed('a1', 'Ada') },
    { event_type: 'bare' },
    audited({ by: 'ops', reason: 'check' }),
  ]
  const frozen = [deposit('a1', 1)] as const
  store.append(plain)
  store.append(frozen)
  const predicate: Partial<Deposited> = { account: 'a1' }
  const types: readonly string[] = ['money-deposited']
  store.query({ filters: [{ event_types: types, payload_predicates: [predicate, byRecord] }] })
  // Outputs stay precise: a stored payload is JSON, not `unknown`.
  const first: JsonValue = store.query().event_records[0]?.payload ?? null
  void first
}

function refusedAtCompileTime(store: FactstrStore): void {
  // @ts-expect-error an unknown field is a type error here and FACTSTR_INVALID_INPUT at run time
  store.query({ filters: [{ eventTypes: ['money-deposited'] }] })
  // @ts-expect-error the abstract base cannot be constructed
  void new FactstrStore()
  // @ts-expect-error bootstrap takes camelCase options, as in 0.3
  void FactstrPostgresStore.bootstrap({ server_url: 'postgres://localhost', database_name: 'app' })
}

async function watchStops(subscription: FactstrSubscription): Promise<string> {
  const running: boolean = subscription.isRunning
  const known: StreamStop | null = subscription.stopReason
  void [running, known]
  const stop: StreamStop = await subscription.stopped
  switch (stop.reason) {
    case 'handler_failed': {
      const failedAt: bigint = stop.first_sequence_number
      return `${stop.message} at ${failedAt}`
    }
    case 'read_failed':
      return stop.message
    case 'unsubscribed':
    case 'store_closed':
      // @ts-expect-error only failures carry a message
      return stop.message
  }
}

function balanceOf(records: EventRecord[]): number {
  return records.reduce((sum, record) => {
    const payload = record.payload as unknown as Deposited
    return sum + payload.amount
  }, 0)
}

async function withdraw(store: FactstrStore, account: string, amount: number): Promise<bigint | null> {
  const context: EventQuery = {
    filters: [{ event_types: ['money-deposited', 'money-withdrawn'], payload_predicates: [{ account }] }],
  }
  const seen: QueryResult = await store.queryAsync(context)
  if (balanceOf(seen.event_records) < amount) return null
  const outcome: AppendIfResult = await store.appendIfAsync(
    [{ event_type: 'money-withdrawn', payload: { account, amount: -amount } }],
    context,
    seen.current_context_version,
  )
  if (outcome.conflict) {
    const actual: bigint | null = outcome.conflict.actual_context_version
    return actual
  }
  // Narrowed: without a conflict, append_result is set.
  return outcome.append_result.last_sequence_number
}

/** A balance read page by page: one page of records in memory at a time. */
async function pagedBalance(store: FactstrStore, account: string): Promise<number> {
  const context: EventQuery = { filters: [{ payload_predicates: [{ account }] }] }
  const options: QueryPageOptions = { limit: 500 }
  let balance = 0
  for await (const page of store.queryPages(context, options)) balance += balanceOf(page.event_records)
  const first: QueryResult = store.queryPage(context, { limit: 10n, after: null })
  const next: QueryResult = await store.queryPageAsync(context, { limit: 10, after: first.last_returned_sequence_number })
  void next
  return balance
}

function narrowing(outcome: AppendIfResult): AppendResult | undefined {
  // @ts-expect-error append_result may be absent until the result is narrowed
  void outcome.append_result.committed_count
  if (outcome.append_result !== undefined) {
    const conflict: undefined = outcome.conflict
    void conflict
    return outcome.append_result
  }
  const expected: bigint | null = outcome.conflict.expected_context_version
  void expected
  return undefined
}

async function main(): Promise<void> {
  const memory = new FactstrMemoryStore()
  const sqlite: FactstrSqliteStore = FactstrSqliteStore.open('/tmp/consumer.db')
  const postgres: FactstrPostgresStore = FactstrPostgresStore.connect('postgres://localhost/app')
  // The constructors and bootstrap of 0.3.
  const constructedSqlite: FactstrSqliteStore = new FactstrSqliteStore('/tmp/consumer.db')
  const constructedPostgres: FactstrPostgresStore = new FactstrPostgresStore('postgres://localhost/app')
  const bootstrapped: FactstrPostgresStore = FactstrPostgresStore.bootstrap({
    serverUrl: 'postgres://localhost',
    databaseName: 'app',
  })
  const stores: FactstrStore[] = [memory, sqlite, postgres, constructedSqlite, constructedPostgres, bootstrapped]

  const committed = memory.append([deposit('a1', 10)])
  const first: bigint = committed.first_sequence_number
  const all = memory.query()
  const after = memory.query({ min_sequence_number: first })
  const alsoAfter = memory.query({ filters: null, min_sequence_number: 1 })
  memory.appendIf([deposit('a1', 1)], undefined, null)
  memory.appendIf([deposit('a1', 1)], { filters: [{ event_types: ['x'] }] }, 3n)
  // As in 0.2.1: without an expected version, nothing may match the query yet.
  const firstOpening: AppendIfResult = memory.appendIf([{ event_type: 'opened' }], { filters: [{ event_types: ['opened'] }] })
  const stillFirst: AppendIfResult = await memory.appendIfAsync([{ event_type: 'opened' }], { filters: [{ event_types: ['opened'] }] })
  void [firstOpening, stillFirst, narrowing(firstOpening)]
  payloadsOfEveryType(memory)
  refusedAtCompileTime(memory)

  const live: FactstrSubscription = memory.streamAll(async (batch: EventRecord[]) => {
    for (const record of batch) {
      const sequence: bigint = record.sequence_number
      void sequence
    }
  })
  const filtered = memory.streamTo({ filters: [{ payload_predicates: [{ account: 'a1' }] }] }, (batch) => {
    void batch.length
  })
  const durable: FactstrSubscription = await memory.streamAllDurable('balances', async () => {})
  const durableFiltered = await memory.streamToDurable({ name: 'a1' }, { filters: [{ event_types: ['money-deposited'] }] }, () => {})
  void watchStops(durable)
  const id: bigint = durable.id
  void id

  try {
    memory.append([])
  } catch (error) {
    if (error instanceof FactstrError && error.code === ErrorCode.EmptyAppend) {
      const code: ErrorCode = error.code
      void code
    }
    if (error instanceof FactstrInputError) {
      const code: 'FACTSTR_INVALID_INPUT' = error.code
      const asTypeError: TypeError = error
      void [code, asTypeError]
    }
  }
  const made = new FactstrError(ErrorCode.BackendFailure, 'made by the application')
  const conflictVersion: bigint | null | undefined = made.actual_context_version
  void conflictVersion

  await withdraw(memory, 'a1', 5)
  await pagedBalance(memory, 'a1')
  for (const subscription of [live, filtered, durable, durableFiltered]) subscription.unsubscribe()
  const closed: Promise<void> = memory.close()
  await closed
  await Promise.all(stores.map((store) => store.close()))
  void [all, after, alsoAfter]
}

void main
