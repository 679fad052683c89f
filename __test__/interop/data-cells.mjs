// The data cells of the interop matrix, shared by the peers' files: on one connection (made by
// `setup`, which resolves { channel: our side's first channel, open(label, mode): a channel
// opened by the side that offered, resolving our side's DataChannel, theirs(label): the peer's
// view of a channel, { ordered, maxRetransmits }, or null when its API does not tell,
// unreliableMode: what our side calls an unreliable channel opened from there (default
// 'unreliable') }), the peer echoing every message: an ordered reliable echo of mixed
// text/binary, an unreliable channel, a channel opened after 2.5 s of silence, a 1 MiB transfer.
import { it, expect, beforeAll } from 'vitest'
import { randomBytes } from 'node:crypto'
import { until } from '../helpers.mjs'
import { sleep } from './common.mjs'

// Collects a channel's messages.
export function collect(ch) {
  const got = []
  ch.on('message', (m) => got.push(m))
  return got
}

export function dataCells(setup) {
  let ctx
  beforeAll(async () => {
    ctx = await setup()
  }, 30000)

  it('ordered reliable channel: mixed text/binary echo keeps order, kind and content', async () => {
    const ch = ctx.channel
    expect(ch.mode).toBe('reliable')
    const got = collect(ch)
    const sent = []
    for (let i = 0; i < 60; i++) {
      const m = i % 2 ? Buffer.from(`bin-${i}-${'x'.repeat(i * 37)}`) : `text ${i} ${'é'.repeat(i)}`
      sent.push(m)
      await ch.send(m)
    }
    await until(() => got.length >= sent.length, 10000)
    expect(got.length).toBe(sent.length)
    got.forEach((m, i) => {
      if (Buffer.isBuffer(sent[i])) {
        expect(m.kind).toBe('binary')
        expect(Buffer.compare(m.data, sent[i])).toBe(0)
      } else {
        expect(m).toEqual({ kind: 'text', data: sent[i] })
      }
    })
  })

  it('unreliable channel (unordered, no retransmits) echoes', async () => {
    const ch = await ctx.open('lossy', 'unreliable')
    // What werift's side of the channel says it is: unordered, no retransmits.
    const theirs = ctx.theirs?.('lossy')
    if (theirs) expect(theirs).toEqual({ ordered: false, maxRetransmits: 0 })
    expect(ch.mode).toBe(ctx.unreliableMode ?? 'unreliable')
    const got = collect(ch)
    const sent = Array.from({ length: 30 }, (_, i) => `u${i}`)
    for (const m of sent) await ch.send(m)
    // Loopback loses nothing; the channel may reorder.
    await until(() => got.length >= sent.length, 10000)
    expect(got.map((m) => m.data).sort()).toEqual([...sent].sort())
  })

  it('a channel opened after 2.5 s of silence opens and echoes; the first still works', async () => {
    await sleep(2500)
    const ch = await ctx.open('late', 'reliable')
    const got = collect(ch)
    await ch.send('after the silence')
    await until(() => got.length >= 1, 10000)
    expect(got[0]).toEqual({ kind: 'text', data: 'after the silence' })
    const first = collect(ctx.channel)
    await ctx.channel.send('first again')
    await until(() => first.length >= 1, 10000)
    expect(first[0].data).toBe('first again')
  }, 20000)

  it('1 MiB transfer (64 × 16 KiB) comes back byte for byte', async () => {
    const ch = await ctx.open('bulk', 'reliable')
    const got = collect(ch)
    const data = randomBytes(1 << 20)
    const chunk = 16 * 1024
    for (let o = 0; o < data.length; o += chunk) await ch.send(data.subarray(o, o + chunk))
    await until(() => got.reduce((n, m) => n + m.data.length, 0) >= data.length, 30000)
    expect(got.every((m) => m.kind === 'binary')).toBe(true)
    expect(Buffer.compare(Buffer.concat(got.map((m) => m.data)), data)).toBe(0)
  }, 40000)
}

