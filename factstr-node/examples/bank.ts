// A small bank in TypeScript: conditional appends that never overdraw, even
// with many withdrawals racing, and a durable projection of balances.
//
// From factstr-node/: npx tsc -p examples && node examples/bank.js
// (scripts/test-node runs it).

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { type EventQuery, type EventRecord, FactstrSqliteStore, type FactstrStore } from '..'

const moneyOf = (account: string): EventQuery => ({
  filters: [{ event_types: ['money-deposited', 'money-withdrawn'], payload_predicates: [{ account }] }],
})

function balanceOf(records: EventRecord[]): number {
  return records.reduce((sum, record) => {
    const { amount } = record.payload as { amount: number }
    return record.event_type === 'money-deposited' ? sum + amount : sum - amount
  }, 0)
}

/** Withdraws unless that overdraws; retries when another withdrawal won the race. */
async function withdraw(store: FactstrStore, account: string, amount: number): Promise<boolean> {
  for (;;) {
    const seen = await store.queryAsync(moneyOf(account))
    if (balanceOf(seen.event_records) < amount) return false
    const outcome = await store.appendIfAsync(
      [{ event_type: 'money-withdrawn', payload: { account, amount } }],
      moneyOf(account),
      seen.current_context_version,
    )
    if (outcome.append_result) return true
  }
}

async function main(): Promise<void> {
  const folder = mkdtempSync(join(tmpdir(), 'factstr-ts-bank-'))
  const store = FactstrSqliteStore.open(join(folder, 'bank.db'))
  try {
    store.append([{ event_type: 'money-deposited', payload: { account: 'a1', amount: 100 } }])

    const balances = new Map<string, number>()
    const projection = await store.streamToDurable(
      'balances',
      { filters: [{ event_types: ['money-deposited', 'money-withdrawn'] }] },
      async (batch) => {
        for (const record of batch) {
          const { account } = record.payload as { account: string }
          balances.set(account, (balances.get(account) ?? 0) + balanceOf([record]))
        }
      },
    )
    console.log('after replay, a1 holds', balances.get('a1'))

    const results = await Promise.all(Array.from({ length: 15 }, () => withdraw(store, 'a1', 10)))
    const won = results.filter(Boolean).length
    const final = balanceOf(store.query(moneyOf('a1')).event_records)
    console.log(`15 withdrawals of 10 raced: ${won} succeeded, balance ${final}`)
    if (won !== 10 || final !== 0) throw new Error('overdraft: this must never happen')

    await new Promise((resolve) => setTimeout(resolve, 100))
    console.log('the projection says a1 holds', balances.get('a1'))
    projection.unsubscribe()
  } finally {
    store.close()
    rmSync(folder, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
