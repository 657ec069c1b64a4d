'use strict'
// The key conformance behaviours, from JavaScript, for any store.
// `describeStore(name, openStore)` registers them; `openStore()` returns a
// fresh, empty store.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')

const { ErrorCode, FactstrError, FactstrInputError } = require('..')

const PATIENCE_MS = 20_000

/** Collects delivered batches and lets a test wait for them. */
function recorder() {
  const batches = []
  let waiters = []
  const handler = async (batch) => {
    batches.push(batch)
    for (const waiter of waiters) waiter()
  }
  async function until(predicate, what) {
    const deadline = Date.now() + PATIENCE_MS
    while (!predicate(batches)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(shapes(batches))}`)
      await new Promise((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, 50)
      })
      waiters = []
    }
    return batches
  }
  return {
    batches,
    handler,
    untilSequence: (sequence) =>
      until((all) => all.some((batch) => batch.some((r) => r.sequence_number === BigInt(sequence))), `sequence ${sequence}`),
  }
}

function shapes(batches) {
  return batches.map((batch) => batch.map((record) => Number(record.sequence_number)))
}

function events(type, count) {
  return Array.from({ length: count }, (_, n) => ({ event_type: type, payload: { n } }))
}

function assertInvalid(action, field) {
  assert.throws(action, (error) => {
    assert.ok(error instanceof FactstrInputError, `expected a FactstrInputError, got ${error}`)
    assert.ok(error instanceof TypeError)
    assert.equal(error.code, ErrorCode.InvalidInput)
    assert.ok(error.message.includes(field), `message "${error.message}" should name ${field}`)
    return true
  })
}

function describeStore(name, openStore) {
  describe(`${name}: append and query`, () => {
    it('appends batches with consecutive bigint sequence numbers', () => {
      const store = openStore()
      const first = store.append(events('a', 2))
      const second = store.append([{ event_type: 'b', payload: { k: [1, 'x', null] } }])
      assert.deepEqual(first, { first_sequence_number: 1n, last_sequence_number: 2n, committed_count: 2n })
      assert.deepEqual(second, { first_sequence_number: 3n, last_sequence_number: 3n, committed_count: 1n })
      const all = store.query()
      assert.deepEqual(all.event_records.map((r) => r.sequence_number), [1n, 2n, 3n])
      assert.deepEqual(all.event_records[2].payload, { k: [1, 'x', null] })
      assert.match(all.event_records[0].occurred_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
      assert.equal(all.event_records[0].occurred_at, all.event_records[1].occurred_at)
      assert.equal(all.last_returned_sequence_number, 3n)
      assert.equal(all.current_context_version, 3n)
      store.close()
    })

    it('refuses an empty append with FACTSTR_EMPTY_APPEND', () => {
      const store = openStore()
      assert.throws(() => store.append([]), (error) => error instanceof FactstrError && error.code === ErrorCode.EmptyAppend)
      assert.throws(() => store.appendIf([], null, 5n), (error) => error.code === ErrorCode.EmptyAppend)
      store.close()
    })

    it('filters by type and payload predicate, with an exclusive cursor', () => {
      const store = openStore()
      store.append([
        { event_type: 'deposited', payload: { account: 'a1', amount: 5 } },
        { event_type: 'deposited', payload: { account: 'a2', amount: 5 } },
        { event_type: 'withdrawn', payload: { account: 'a1', amount: 1 } },
        { event_type: 'deposited', payload: { account: ['a1'] } },
        { event_type: 'deposited', payload: { account: 'a1', tags: ['x', 'y'] } },
      ])
      const a1Deposits = { filters: [{ event_types: ['deposited'], payload_predicates: [{ account: 'a1' }] }] }
      let result = store.query(a1Deposits)
      assert.deepEqual(result.event_records.map((r) => r.sequence_number), [1n, 5n])
      result = store.query({ ...a1Deposits, min_sequence_number: 1n })
      assert.deepEqual(result.event_records.map((r) => r.sequence_number), [5n])
      result = store.query({ ...a1Deposits, min_sequence_number: 5 })
      assert.deepEqual(result.event_records, [])
      assert.equal(result.last_returned_sequence_number, null)
      assert.equal(result.current_context_version, 5n)
      result = store.query({ filters: [{ payload_predicates: [{ tags: ['y'] }, { amount: 1 }] }] })
      assert.deepEqual(result.event_records.map((r) => r.sequence_number), [3n, 5n])
      result = store.query({ filters: [{ event_types: [] }] })
      assert.equal(result.current_context_version, null)
      result = store.query({ filters: null, min_sequence_number: undefined })
      assert.equal(result.event_records.length, 5)
      store.close()
    })
  })

  describe(`${name}: conditional append`, () => {
    it('returns a conflict as a result and writes nothing', () => {
      const store = openStore()
      const context = { filters: [{ event_types: ['opened'], payload_predicates: [{ account: 'a1' }] }] }
      const seen = store.query(context).current_context_version
      assert.equal(seen, null)
      const committed = store.appendIf([{ event_type: 'opened', payload: { account: 'a1' } }], context, seen)
      assert.deepEqual(committed, { append_result: { first_sequence_number: 1n, last_sequence_number: 1n, committed_count: 1n } })
      const conflict = store.appendIf([{ event_type: 'opened', payload: { account: 'a1' } }], context, seen)
      assert.deepEqual(conflict, { conflict: { expected_context_version: null, actual_context_version: 1n } })
      const again = store.appendIf([{ event_type: 'opened', payload: { account: 'a1' } }], context, 1)
      assert.equal(again.append_result.first_sequence_number, 2n)
      assert.equal(store.query().event_records.length, 2)
      assert.equal(store.appendIf(events('x', 1), undefined, undefined).conflict.actual_context_version, 2n)
      store.close()
    })

    it('without an expected version, appends only while nothing matches the query (as in 0.2.1)', async () => {
      const store = openStore()
      const openings = { filters: [{ event_types: ['opened'] }] }
      store.append(events('other', 1))
      const first = store.appendIf([{ event_type: 'opened' }], openings)
      assert.equal(first.append_result.last_sequence_number, 2n)
      assert.equal(first.conflict, undefined)
      assert.deepEqual(store.appendIf([{ event_type: 'opened' }], openings), {
        conflict: { expected_context_version: null, actual_context_version: 2n },
      })
      assert.deepEqual((await store.appendIfAsync([{ event_type: 'opened' }], openings)).conflict, {
        expected_context_version: null,
        actual_context_version: 2n,
      })
      assert.equal(store.query().event_records.length, 2)
      store.close()
    })
  })

  describe(`${name}: input validation`, () => {
    it('rejects wrong types with a TypeError naming the field', () => {
      const store = openStore()
      assertInvalid(() => store.append('nope'), 'events')
      assertInvalid(() => store.append([{ payload: 1 }]), 'events[0].event_type')
      assertInvalid(() => store.append([{ event_type: 'a', payloda: 1 }]), 'events[0].payloda')
      assertInvalid(() => store.append([{ event_type: '' }]), 'event_type')
      assertInvalid(() => store.append([{ event_type: 'a', payload: { big: 1n } }]), 'events')
      assertInvalid(() => store.query({ filters: [{ event_types: 'a' }] }), 'filters[0].event_types')
      assertInvalid(() => store.query({ filters: [{ eventTypes: ['a'] }] }), 'filters[0].eventTypes')
      assertInvalid(() => store.query({ min_sequence_number: -1n }), 'min_sequence_number')
      assertInvalid(() => store.query({ min_sequence_number: 1.5 }), 'min_sequence_number')
      assertInvalid(() => store.query({ min_sequence_number: '3' }), 'min_sequence_number')
      assertInvalid(() => store.query({ filters: [{ payload_predicates: [() => 1] }] }), 'query')
      assertInvalid(() => store.query(42), 'query')
      assertInvalid(() => store.appendIf(events('a', 1), null, -2), 'expected_context_version')
      assertInvalid(() => store.appendIf(events('a', 1), null, 'x'), 'expected_context_version')
      assertInvalid(() => store.streamAll('not a function'), 'handler')
      assert.equal(store.query().event_records.length, 0)
      store.close()
    })

    it('rejects an empty durable stream name', async () => {
      const store = openStore()
      await assert.rejects(store.streamAllDurable('', async () => {}), (error) => error.code === ErrorCode.InvalidInput && /name/.test(error.message))
      await assert.rejects(store.streamAllDurable(7, async () => {}), (error) => error.code === ErrorCode.InvalidInput)
      store.close()
    })
  })

  describe(`${name}: live streams`, () => {
    it('delivers each committed batch as one batch, filtered for streamTo', async () => {
      const store = openStore()
      store.append(events('before', 1))
      const all = recorder()
      const onlyA = recorder()
      const subscriptions = [
        store.streamAll(all.handler),
        store.streamTo({ filters: [{ event_types: ['a'] }] }, onlyA.handler),
      ]
      assert.notEqual(subscriptions[0].id, subscriptions[1].id)
      store.append([{ event_type: 'a' }, { event_type: 'b' }, { event_type: 'a' }])
      store.append(events('b', 1))
      store.append(events('a', 1))
      await all.untilSequence(6)
      await onlyA.untilSequence(6)
      assert.deepEqual(shapes(all.batches), [[2, 3, 4], [5], [6]])
      assert.deepEqual(shapes(onlyA.batches), [[2, 4], [6]])
      for (const subscription of subscriptions) subscription.unsubscribe()
      store.close()
    })

    it('keeps a live stream after its handler throws or rejects', async () => {
      const store = openStore()
      const seen = []
      const subscription = store.streamAll(async (batch) => {
        seen.push(Number(batch[0].sequence_number))
        if (batch[0].sequence_number === 1n) throw new Error('refused')
        if (batch[0].sequence_number === 2n) return Promise.reject(new Error('rejected'))
      })
      const sync = []
      const syncSubscription = store.streamAll((batch) => {
        sync.push(Number(batch[0].sequence_number))
        throw new Error('sync throw')
      })
      const marker = recorder()
      const markerSubscription = store.streamAll(marker.handler)
      store.append(events('a', 1))
      store.append(events('a', 1))
      store.append(events('a', 1))
      await marker.untilSequence(3)
      const deadline = Date.now() + PATIENCE_MS
      while ((seen.length < 3 || sync.length < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      assert.deepEqual(seen, [1, 2, 3])
      assert.deepEqual(sync, [1, 2, 3])
      subscription.unsubscribe()
      syncSubscription.unsubscribe()
      markerSubscription.unsubscribe()
      store.close()
    })

    it('stops delivering after unsubscribe', async () => {
      const store = openStore()
      const stopped = recorder()
      const subscription = store.streamAll(stopped.handler)
      store.append(events('a', 1))
      await stopped.untilSequence(1)
      subscription.unsubscribe()
      subscription.unsubscribe()
      const marker = recorder()
      const markerSubscription = store.streamAll(marker.handler)
      store.append(events('a', 1))
      await marker.untilSequence(2)
      await new Promise((r) => setTimeout(r, 30))
      assert.deepEqual(shapes(stopped.batches), [[1]])
      markerSubscription.unsubscribe()
      store.close()
    })

    it('awaits a handler before handing it the next batch', async () => {
      const store = openStore()
      let active = 0
      let overlapped = false
      const done = recorder()
      const subscription = store.streamAll(async (batch) => {
        if (active++ > 0) overlapped = true
        await new Promise((r) => setTimeout(r, 5))
        active--
        await done.handler(batch)
      })
      for (let i = 0; i < 5; i++) store.append(events('a', 1))
      await done.untilSequence(5)
      assert.equal(overlapped, false)
      assert.deepEqual(shapes(done.batches), [[1], [2], [3], [4], [5]])
      subscription.unsubscribe()
      store.close()
    })
  })

  describe(`${name}: durable streams`, () => {
    it('replays history batch by batch, then continues live', async () => {
      const store = openStore()
      store.append(events('a', 2))
      store.append(events('b', 1))
      const durable = recorder()
      const subscription = await store.streamAllDurable('projection', durable.handler)
      assert.deepEqual(shapes(durable.batches), [[1, 2], [3]])
      store.append(events('a', 1))
      await durable.untilSequence(4)
      assert.deepEqual(shapes(durable.batches), [[1, 2], [3], [4]])
      subscription.unsubscribe()

      store.append(events('a', 1))
      const resumed = recorder()
      const again = await store.streamToDurable('filtered', { filters: [{ event_types: ['a'] }] }, resumed.handler)
      assert.deepEqual(shapes(resumed.batches), [[1, 2], [4], [5]])
      again.unsubscribe()
      store.close()
    })

    it('rejects registration when a replay handler fails, and resumes at the failed batch', async () => {
      const store = openStore()
      for (let i = 0; i < 3; i++) store.append(events('a', 1))
      const failing = []
      await assert.rejects(
        store.streamAllDurable('fragile', async (batch) => {
          failing.push(Number(batch[0].sequence_number))
          if (batch[0].sequence_number === 2n) throw new Error('cannot handle 2')
        }),
        (error) => error instanceof FactstrError && error.code === ErrorCode.BackendFailure && /cannot handle 2/.test(error.message),
      )
      assert.deepEqual(failing, [1, 2])
      const healthy = recorder()
      const subscription = await store.streamAllDurable('fragile', healthy.handler)
      assert.deepEqual(shapes(healthy.batches), [[2], [3]])
      await assert.rejects(store.streamAllDurable('fragile', healthy.handler), (error) => error.code === ErrorCode.BackendFailure)
      await assert.rejects(
        store.streamToDurable('fragile-other', { filters: [{ event_types: ['a'] }] }, async () => {}).then((s) => {
          s.unsubscribe()
          return store.streamToDurable('fragile-other', { filters: [{ event_types: ['b'] }] }, async () => {})
        }),
        (error) => error.code === ErrorCode.BackendFailure,
      )
      subscription.unsubscribe()
      store.close()
    })
  })

  describe(`${name}: async variants`, () => {
    it('appendAsync, queryAsync and appendIfAsync work like their synchronous twins', async () => {
      const store = openStore()
      const appended = await store.appendAsync(events('a', 3))
      assert.equal(appended.last_sequence_number, 3n)
      const queried = await store.queryAsync({ filters: [{ event_types: ['a'] }], min_sequence_number: 1n })
      assert.deepEqual(queried.event_records.map((r) => r.sequence_number), [2n, 3n])
      const conflict = await store.appendIfAsync(events('a', 1), { filters: [{ event_types: ['a'] }] }, 1n)
      assert.deepEqual(conflict.conflict, { expected_context_version: 1n, actual_context_version: 3n })
      await assert.rejects(store.appendAsync([]), (error) => error.code === ErrorCode.EmptyAppend)
      await assert.rejects(store.queryAsync({ min_sequence_number: -1 }), (error) => error instanceof TypeError)
      store.close()
    })

    it('100 concurrent appendIfAsync on one context have exactly one winner per version', async () => {
      const store = openStore()
      const context = { filters: [{ event_types: ['counted'] }] }
      const racing = await Promise.all(
        Array.from({ length: 100 }, (_, n) => store.appendIfAsync([{ event_type: 'counted', payload: { n } }], context, null)),
      )
      assert.equal(racing.filter((r) => r.append_result).length, 1)
      assert.equal(racing.filter((r) => r.conflict).length, 99)

      const wins = await Promise.all(
        Array.from({ length: 100 }, async (_, n) => {
          for (;;) {
            const seen = (await store.queryAsync(context)).current_context_version
            const outcome = await store.appendIfAsync([{ event_type: 'counted', payload: { n } }], context, seen)
            if (outcome.append_result) return seen
          }
        }),
      )
      const versions = wins.map(Number).sort((a, b) => a - b)
      assert.deepEqual(versions, Array.from({ length: 100 }, (_, i) => i + 1))
      const records = store.query(context).event_records
      assert.deepEqual(records.map((r) => r.sequence_number), Array.from({ length: 101 }, (_, i) => BigInt(i + 1)))
      store.close()
    })
  })

  describe(`${name}: bounded reads`, () => {
    it('queryPage reads at most limit records after the cursor, with the context version of the whole query', () => {
      const store = openStore()
      store.append(events('a', 3))
      store.append(events('b', 2))
      store.append(events('a', 4))
      const aFacts = { filters: [{ event_types: ['a'] }] }
      const first = store.queryPage(aFacts, { limit: 2 })
      assert.deepEqual(first.event_records.map((r) => r.sequence_number), [1n, 2n])
      assert.equal(first.last_returned_sequence_number, 2n)
      assert.equal(first.current_context_version, 9n)
      const second = store.queryPage(aFacts, { limit: 2, after: first.last_returned_sequence_number })
      assert.deepEqual(second.event_records.map((r) => r.sequence_number), [3n, 6n])
      assert.equal(second.current_context_version, 9n)
      // `after` as a number, and in place of the query's own cursor.
      const third = store.queryPage({ ...aFacts, min_sequence_number: 1n }, { limit: 10, after: 6 })
      assert.deepEqual(third.event_records.map((r) => r.sequence_number), [7n, 8n, 9n])
      // Without `after`, the query's own cursor counts.
      const own = store.queryPage({ min_sequence_number: 8 }, { limit: 10 })
      assert.deepEqual(own.event_records.map((r) => r.sequence_number), [9n])
      const past = store.queryPage(undefined, { limit: 5, after: 9n })
      assert.deepEqual(past, { event_records: [], last_returned_sequence_number: null, current_context_version: 9n })
      // The page's version works for appendIf, as query's does.
      const appended = store.appendIf(events('a', 1), aFacts, first.current_context_version)
      assert.equal(appended.append_result.first_sequence_number, 10n)
      store.close()
    })

    it('queryPageAsync gives the page queryPage gives', async () => {
      const store = openStore()
      store.append(events('a', 5))
      const sync = store.queryPage(null, { limit: 2, after: 1n })
      const async_ = await store.queryPageAsync(null, { limit: 2, after: 1n })
      assert.deepEqual(async_, sync)
      assert.deepEqual(async_.event_records.map((r) => r.sequence_number), [2n, 3n])
      store.close()
    })

    it('queryPages iterates every page with for await, one page at a time', async () => {
      const store = openStore()
      for (let n = 0; n < 5; n++) store.append([...events('a', 2), ...events('b', 1)])
      const seen = []
      const sizes = []
      for await (const page of store.queryPages({ filters: [{ event_types: ['a'] }] }, { limit: 3 })) {
        sizes.push(page.event_records.length)
        seen.push(...page.event_records.map((r) => Number(r.sequence_number)))
        assert.equal(page.current_context_version, 14n)
      }
      assert.deepEqual(sizes, [3, 3, 3, 1])
      assert.deepEqual(seen, [1, 2, 4, 5, 7, 8, 10, 11, 13, 14])

      // A page that ends exactly at the newest fact is the last one read.
      const exact = []
      for await (const page of store.queryPages(null, { limit: 5, after: 5 })) exact.push(page.event_records.length)
      assert.deepEqual(exact, [5, 5])
      // Nothing to read: no page at all.
      const none = []
      for await (const page of store.queryPages({ filters: [{ event_types: ['c'] }] }, { limit: 3 })) none.push(page)
      assert.deepEqual(none, [])
      store.close()
    })

    it('queryPages reads lazily: facts appended between pages come in later pages', async () => {
      const store = openStore()
      store.append(events('a', 4))
      const seen = []
      let appendedMeanwhile = false
      for await (const page of store.queryPages(null, { limit: 2 })) {
        seen.push(...page.event_records.map((r) => Number(r.sequence_number)))
        if (!appendedMeanwhile) {
          appendedMeanwhile = true
          await store.appendAsync(events('a', 2))
        }
      }
      assert.deepEqual(seen, [1, 2, 3, 4, 5, 6])
      store.close()
    })

    it('refuses page options it cannot use, naming the field', async () => {
      const store = openStore()
      assertInvalid(() => store.queryPage(null, { limit: 0 }), 'options.limit')
      assertInvalid(() => store.queryPage(null, { limit: 1.5 }), 'options.limit')
      assertInvalid(() => store.queryPage(null, {}), 'options.limit')
      assertInvalid(() => store.queryPage(null), 'options')
      assertInvalid(() => store.queryPage(null, { limit: 1, after: -1 }), 'options.after')
      assertInvalid(() => store.queryPage(null, { limit: 1, cursor: 3 }), 'options.cursor')
      assertInvalid(() => store.queryPage({ filters: 'a' }, { limit: 1 }), 'filters')
      assertInvalid(() => store.queryPages(null, { limit: -1 }), 'options.limit')
      await assert.rejects(store.queryPageAsync(null, { limit: 0 }), (error) => error instanceof FactstrInputError)
      await assert.rejects(store.queryPageAsync({ filters: 'a' }, { limit: 1 }), (error) => error instanceof FactstrInputError)
      store.close()
      assert.throws(() => store.queryPage(null, { limit: 1 }), (error) => error.code === ErrorCode.BackendFailure)
    })
  })

  describe(`${name}: closing`, () => {
    it('closing with active streams is safe and later calls fail clearly', async () => {
      const store = openStore()
      const live = recorder()
      store.streamAll(live.handler)
      await store.streamAllDurable('closing', async () => {})
      store.append(events('a', 1))
      await live.untilSequence(1)
      const closing = store.close()
      assert.equal(store.close(), closing, 'closing twice gives the same promise')
      assert.equal(store.isOpen, false)
      assert.throws(() => store.append(events('a', 1)), (error) => error.code === ErrorCode.BackendFailure && /closed/.test(error.message))
      await assert.rejects(store.queryAsync(), (error) => error.code === ErrorCode.BackendFailure)
      assert.equal(await closing, undefined)
    })

    it('close() delivers the batches committed before it to a handler still running, then resolves', async () => {
      const store = openStore()
      const handled = []
      let running = 0
      const slow = store.streamAll(async (batch) => {
        running++
        await new Promise((resolve) => setTimeout(resolve, 100))
        handled.push(Number(batch[0].sequence_number))
        running--
      })
      const durableHandled = []
      const durable = await store.streamAllDurable('closing-slowly', async (batch) => {
        await new Promise((resolve) => setTimeout(resolve, 50))
        durableHandled.push(Number(batch[0].sequence_number))
      })
      for (let n = 0; n < 3; n++) store.append(events('a', 1))
      while (running === 0) await new Promise((resolve) => setTimeout(resolve, 1))
      await store.close()
      assert.deepEqual(handled, [1, 2, 3])
      assert.deepEqual(durableHandled, [1, 2, 3])
      assert.deepEqual(await slow.stopped, { reason: 'store_closed' })
      assert.deepEqual(await durable.stopped, { reason: 'store_closed' })
      assert.equal(slow.isRunning, false)
    })

    it('a store closed while calls are in flight settles every promise', async () => {
      const store = openStore()
      store.append(events('a', 20))
      const replaying = store.streamAllDurable('in-flight', async () => {
        await new Promise((resolve) => setTimeout(resolve, 2))
      })
      const live = store.streamAll(async () => {
        await new Promise((resolve) => setTimeout(resolve, 2))
      })
      const inFlight = [replaying]
      for (let n = 0; n < 50; n++) {
        inFlight.push(store.appendAsync(events('b', 1)))
        inFlight.push(store.queryAsync({ filters: [{ event_types: ['a'] }] }))
        inFlight.push(store.appendIfAsync(events('c', 1), { filters: [{ event_types: ['c'] }] }, null))
      }
      const closed = store.close()
      inFlight.push(store.appendAsync(events('late', 1)), store.streamAllDurable('too-late', async () => {}))
      const outcomes = await Promise.allSettled(inFlight)
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') {
          assert.ok(outcome.reason instanceof FactstrError, `rejected with ${outcome.reason}`)
          assert.ok(Object.values(ErrorCode).includes(outcome.reason.code))
        }
      }
      assert.equal(outcomes.at(-2).reason.code, ErrorCode.BackendFailure)
      assert.equal(outcomes.at(-1).reason.code, ErrorCode.BackendFailure)
      await closed
      const stops = [await live.stopped]
      if (outcomes[0].status === 'fulfilled') stops.push(await outcomes[0].value.stopped)
      for (const stop of stops) assert.equal(stop.reason, 'store_closed')
    })
  })

  describe(`${name}: closing during a replay`, () => {
    it('close() ends a durable replay after the handler call in progress; the registration rejects', async () => {
      const store = openStore()
      for (let n = 0; n < 200; n++) store.append(events('a', 1))
      const handled = []
      const replaying = store.streamAllDurable('long-replay', async (batch) => {
        handled.push(Number(batch[0].sequence_number))
        await new Promise((resolve) => setTimeout(resolve, 5))
      })
      while (handled.length < 3) await new Promise((resolve) => setTimeout(resolve, 1))
      const closed = store.close()
      await assert.rejects(
        replaying,
        (error) => error instanceof FactstrError && error.code === ErrorCode.BackendFailure && /closed during the replay/.test(error.message),
      )
      await closed
      assert.ok(handled.length < 200, `the replay ran on to ${handled.length}`)
      assert.deepEqual(handled, Array.from({ length: handled.length }, (_, n) => n + 1))
    })
  })

  describe(`${name}: knowing when a stream stops`, () => {
    it('stopped resolves with unsubscribed after the batches committed before unsubscribe', async () => {
      const store = openStore()
      const live = recorder()
      const subscription = store.streamAll(async (batch) => {
        await new Promise((resolve) => setTimeout(resolve, 20))
        await live.handler(batch)
      })
      assert.equal(subscription.isRunning, true)
      assert.equal(subscription.stopReason, null)
      store.append(events('a', 1))
      store.append(events('a', 1))
      subscription.unsubscribe()
      store.append(events('a', 1))
      assert.deepEqual(await subscription.stopped, { reason: 'unsubscribed' })
      assert.deepEqual(shapes(live.batches), [[1], [2]])
      assert.equal(subscription.isRunning, false)
      assert.deepEqual(subscription.stopReason, { reason: 'unsubscribed' })
      await store.close()
    })

    it('a durable stream whose handler fails while live stops, and stopped says where', async () => {
      const store = openStore()
      store.append(events('a', 1))
      const handled = []
      const subscription = await store.streamAllDurable({ name: 'fails-live' }, async (batch) => {
        const first = Number(batch[0].sequence_number)
        if (first === 3) throw new Error('cannot project 3')
        handled.push(first)
      })
      store.append(events('a', 1))
      store.append(events('a', 2))
      store.append(events('a', 1))
      const stop = await subscription.stopped
      assert.equal(stop.reason, 'handler_failed')
      assert.equal(stop.first_sequence_number, 3n)
      assert.match(stop.message, /cannot project 3/)
      assert.deepEqual(handled, [1, 2])
      assert.equal(subscription.isRunning, false)

      // The cursor stayed before the failed batch: registering again redelivers it.
      const again = recorder()
      const resumed = await store.streamAllDurable('fails-live', again.handler)
      assert.deepEqual(shapes(again.batches), [[3, 4], [5]])
      resumed.unsubscribe()
      await store.close()
    })

    it('a durable handler that rejects with a non-Error stops the stream too', async () => {
      const store = openStore()
      const subscription = await store.streamToDurable({ name: 'rejects' }, { filters: [{ event_types: ['a'] }] }, () =>
        Promise.reject('not an Error'),
      )
      store.append(events('a', 1))
      const stop = await subscription.stopped
      assert.equal(stop.reason, 'handler_failed')
      assert.equal(stop.first_sequence_number, 1n)
      assert.match(stop.message, /not an Error/)
      await store.close()
    })

    it('a live stream stays subscribed after its handler fails', async () => {
      const store = openStore()
      const seen = []
      const subscription = store.streamAll(async (batch) => {
        seen.push(Number(batch[0].sequence_number))
        throw new Error('always fails')
      })
      store.append(events('a', 1))
      store.append(events('a', 1))
      const deadline = Date.now() + PATIENCE_MS
      while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
      assert.deepEqual(seen, [1, 2])
      assert.equal(subscription.isRunning, true)
      subscription.unsubscribe()
      assert.equal((await subscription.stopped).reason, 'unsubscribed')
      await store.close()
    })
  })
}

module.exports = { describeStore, events, recorder, shapes }
