// A TypeScript consumer of the package, type-checked with `tsc --strict`
// (npm run typecheck). It is compiled, never run: it proves index.d.ts
// describes the API the way applications use it.

import {
  type AppendIfResult,
  type EventQuery,
  type EventRecord,
  ErrorCode,
  FactstrError,
  FactstrMemoryStore,
  FactstrPostgresStore,
  FactstrSqliteStore,
  type FactstrStore,
  type FactstrSubscription,
  type NewEvent,
  type QueryResult,
} from '..'

interface Deposited {
  account: string
  amount: number
}

function deposit(account: string, amount: number): NewEvent {
  const payload: Deposited = { account, amount }
  return { event_type: 'money-deposited', payload: { ...payload } }
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
  return outcome.append_result?.last_sequence_number ?? null
}

async function main(): Promise<void> {
  const memory = new FactstrMemoryStore()
  const sqlite: FactstrSqliteStore = FactstrSqliteStore.open('/tmp/consumer.db')
  const postgres: FactstrPostgresStore = FactstrPostgresStore.connect('postgres://localhost/app')
  const stores: FactstrStore[] = [memory, sqlite, postgres]

  const committed = memory.append([deposit('a1', 10)])
  const first: bigint = committed.first_sequence_number
  const all = memory.query()
  const after = memory.query({ min_sequence_number: first })
  const alsoAfter = memory.query({ filters: null, min_sequence_number: 1 })
  memory.appendIf([deposit('a1', 1)], undefined, null)
  memory.appendIf([deposit('a1', 1)], { filters: [{ event_types: ['x'] }] }, 3n)

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
  const durableFiltered = await memory.streamToDurable('a1', { filters: [{ event_types: ['money-deposited'] }] }, () => {})
  const id: bigint = durable.id
  void id

  try {
    memory.append([])
  } catch (error) {
    if (error instanceof FactstrError && error.code === ErrorCode.EmptyAppend) {
      const code: ErrorCode = error.code
      void code
    }
  }

  await withdraw(memory, 'a1', 5)
  for (const subscription of [live, filtered, durable, durableFiltered]) subscription.unsubscribe()
  for (const store of stores) store.close()
  void [all, after, alsoAfter]
}

void main
