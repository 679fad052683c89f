import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createRequire } from 'node:module'
import { withServer, transport, uid, until, once } from '../helpers.mjs'

const { BACKLOG_BYTES, BACKLOG_PEER_BYTES } = createRequire(import.meta.url)('../../js/channel.js')

describe('hostile data channels: backlogs are bounded by bytes', () => {
  let server, victim, attacker, c1, c2
  beforeAll(async () => {
    server = await withServer()
    victim = await transport(server, uid('victim'))
    attacker = await transport(server, uid('attacker'))
    c1 = await transport(server, uid('canary1'))
    c2 = await transport(server, uid('canary2'))
    await attacker.connectPeer(victim.peerId)
    await c1.connectPeer(c2.peerId)
    await until(() => victim.getPeer(attacker.peerId) && c2.getPeer(c1.peerId))
  })
  afterAll(async () => {
    for (const t of [victim, attacker, c1, c2]) await t?.shutdown()
    await server?.close()
  })

  it('a flood into a channel without listener stays under the byte budget, the canary keeps delivering, and what is kept arrives in order', async () => {
    const size = 256 * 1024
    const total = 1000
    const opened = once(victim, 'data-channel', (ch) => ch.label === 'flood')
    const ch = await attacker.getPeer(victim.peerId).createDataChannel('flood')
    const [flood] = await opened
    // Canary: a healthy pair exchanging messages through the same server during the attack.
    const canaryOut = c1.getPeer(c2.peerId).defaultChannel
    const canaryIn = c2.getPeer(c1.peerId).channels.find((c) => c.label === 'default')
    const canaryGot = []
    canaryIn.on('message', (m) => canaryGot.push(m.data.n))
    let canarySent = 0
    let maxBacklog = 0
    const ticker = setInterval(() => {
      canaryOut.send({ n: canarySent++ }).catch(() => {})
      maxBacklog = Math.max(maxBacklog, flood.backlogBytes)
    }, 20)
    try {
      const buf = Buffer.alloc(size)
      for (let i = 0; i < total; i++) {
        buf.writeUInt32LE(i, 0)
        await ch.send(buf)
        maxBacklog = Math.max(maxBacklog, flood.backlogBytes)
      }
      await until(() => flood._backlog.length + flood.droppedMessages === total, 60000)
    } finally {
      clearInterval(ticker)
    }
    expect(maxBacklog).toBeLessThanOrEqual(BACKLOG_BYTES)
    expect(flood.backlogBytes).toBeLessThanOrEqual(BACKLOG_BYTES)
    expect(flood.droppedMessages).toBeGreaterThan(0)
    expect(flood.droppedBytes).toBe(flood.droppedMessages * size)
    await until(() => canaryGot.length === canarySent)
    expect(canaryGot).toEqual(Array.from({ length: canarySent }, (_, i) => i))
    // A listener now gets the kept messages: a gap-free prefix, in order.
    const kept = flood._backlog.length
    const got = []
    flood.on('message', (m) => got.push(m.data.readUInt32LE(0)))
    await until(() => got.length === kept)
    expect(got).toEqual(Array.from({ length: kept }, (_, i) => i))
    expect(flood.backlogBytes).toBe(0)
    // And later messages flow straight through.
    await ch.send(Buffer.from([1, 2, 3, 4]))
    await until(() => got.length === kept + 1)
  }, 120000)

  it('the channels of one peer share a per-peer byte budget', async () => {
    const size = 256 * 1024
    const chans = []
    for (let k = 0; k < 6; k++) {
      const opened = once(victim, 'data-channel', (ch) => ch.label === `many${k}`)
      const ch = await attacker.getPeer(victim.peerId).createDataChannel(`many${k}`)
      chans.push([ch, (await opened)[0]])
    }
    const per = 20 // 5 MiB per channel: over the channel budget too
    for (const [ch] of chans) {
      for (let i = 0; i < per; i++) await ch.send(Buffer.alloc(size))
    }
    await until(() => chans.every(([, r]) => r._backlog.length + r.droppedMessages === per), 60000)
    const held = chans.reduce((s, [, r]) => s + r.backlogBytes, 0)
    expect(held).toBeLessThanOrEqual(BACKLOG_PEER_BYTES)
    expect(held).toBeGreaterThan(BACKLOG_BYTES)
  }, 120000)
})
