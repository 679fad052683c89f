// HEADER (filled in below)
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createRequire } from 'node:module'
import { createHash } from 'node:crypto'
import { lib, withServer, until, once, uid } from '../helpers.mjs'
import { SignalingPeer } from './signaling-peer.mjs'
import { tone, frequency, rms, channel, concat, testPattern, record, sleep } from './common.mjs'

const require = createRequire(import.meta.url)
let wrtc
try {
  wrtc = require('@roamhq/wrtc')
} catch (e) {
  throw new Error(`@roamhq/wrtc cannot be loaded (devDependency, prebuilt linux-x64 binary): ${e.message}`)
}
const { RTCAudioSource, RTCAudioSink, RTCVideoSource, RTCVideoSink } = wrtc.nonstandard

const DIRECTIONS = ['node-offers', 'wrtc-offers']
const [W, H] = [320, 240]

let server
beforeAll(async () => {
  server = await withServer()
})
afterAll(async () => {
  await server?.close()
})

// Stats of one type (and kind) from a wrtc getStats() report.
async function stats(pc, type, kind) {
  const report = await pc.getStats()
  const all = [...(typeof report.values === 'function' ? report.values() : Object.values(report))]
  return { list: all.filter((s) => s.type === type && (!kind || s.kind === kind || s.mediaType === kind)), all }
}
async function codecOf(pc, type, kind) {
  const { list, all } = await stats(pc, type, kind)
  const codecId = list.find((s) => s.codecId)?.codecId
  return all.find((s) => s.id === codecId)?.mimeType
}
const sum = (xs, k) => xs.reduce((n, s) => n + (s[k] ?? 0), 0)

// Calls `fn(i)` for i = 0..n-1 every `ms`, on the clock (catching up after a late timer).
function paced(n, ms, fn) {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    let i = 0
    const step = async () => {
      try {
        while (i < n && i <= (performance.now() - start) / ms) await fn(i++)
        if (i >= n) return resolve(n)
        setTimeout(step, Math.max(1, start + i * ms - performance.now()))
      } catch (e) {
        reject(e)
      }
    }
    step()
  })
}

const toInt16 = (f) => Int16Array.from(f, (x) => Math.round(x * 32767))

// A call between a Node transport and a wrtc peer. `direction` says who sends the first offer.
// `prepare(pc)` runs on the wrtc connection before anything is negotiated (add tracks, channels).
async function call(direction, { codec = 'vp8', answerMedia = false, prepare } = {}) {
  const errors = []
  const node = new lib.WebRtcTransport({ signalingUrl: server.url, peerId: uid('node'), bindAddress: '127.0.0.1', videoCodec: codec, answerMedia })
  node.on('error', (e) => errors.push(e))
  await node.start()
  const w = await new SignalingPeer({ url: server.url, peerId: uid('wrtc'), RTCPeerConnection: wrtc.RTCPeerConnection }).start()
  const wChannels = []
  w.pc.ondatachannel = (e) => wChannels.push(e.channel)
  const c = { node, w, errors, wChannels, direction, cleanups: [] }
  prepare?.(w.pc, c)
  const t0 = performance.now()
  if (direction === 'node-offers') {
    c.peer = await node.connectPeer(w.peerId)
    const first = await until(() => wChannels.find((ch) => ch.readyState === 'open'), 10000)
    expect(first.label).toBe('default')
    c.first = first
  } else {
    c.first = w.pc.createDataChannel('wrtc-first')
    const connected = once(node, 'peer-connected', (p) => p.peerId === w.peerId, 15000)
    const opened = new Promise((r) => (c.first.onopen = r))
    await w.offer(node.peerId)
    c.peer = await connected
    await opened
  }
  c.connectMs = performance.now() - t0
  c.t0 = t0
  c.close = async () => {
    for (const f of c.cleanups) try { f() } catch {}
    await w.close()
    await node.shutdown()
    expect(w.errors).toEqual([])
  }
  return c
}

// A wrtc channel (send side of the wrtc-offers cells, echo side of the node-offers cells).
function wrapW(ch) {
  ch.binaryType = 'arraybuffer'
  const got = []
  ch.onmessage = (m) => got.push(typeof m.data === 'string' ? m.data : Buffer.from(m.data))
  return { got, send: (x) => ch.send(typeof x === 'string' ? x : new Uint8Array(x)), raw: ch }
}
function wrapNode(ch) {
  const got = []
  ch.on('message', (m) => got.push(m.kind === 'binary' ? Buffer.from(m.data) : m.kind === 'json' ? JSON.stringify(m.data) : m.data))
  return { got, send: (x) => ch.send(x), raw: ch }
}
function echoW(ch) {
  ch.binaryType = 'arraybuffer'
  ch.onmessage = (m) => ch.send(m.data)
}
function echoNode(ch) {
  ch.on('message', (m) => ch.send(m.kind === 'json' ? JSON.stringify(m.data) : m.data))
}

// The sending end of a new channel in the cell's direction: Node opens it (wrtc echoes) when
// Node offered, wrtc opens it (Node echoes) when wrtc offered.
async function openChannel(c, label, mode = 'reliable') {
  if (c.direction === 'node-offers') {
    const ch = await c.peer.createDataChannel(label, { mode })
    const remote = await until(() => c.wChannels.find((x) => x.label === label && x.readyState === 'open'), 10000)
    expect(remote.ordered).toBe(mode === 'reliable')
    // wrtc reports an unset maxRetransmits as 65535 (its own local reliable channels too).
    if (mode === 'reliable') expect([null, 65535]).toContain(remote.maxRetransmits)
    else expect(remote.maxRetransmits).toBe(0)
    echoW(remote)
    return wrapNode(ch)
  }
  const remote = once(c.node, 'data-channel', (ch) => ch.label === label, 10000)
  const ch = c.w.pc.createDataChannel(label, mode === 'reliable' ? {} : { ordered: false, maxRetransmits: 0 })
  // wrtc fires no 'open' for a channel created once SCTP is up (wrtc to wrtc too): poll.
  await until(() => ch.readyState === 'open', 10000)
  const [nch] = await remote
  expect(nch.mode).toBe(mode)
  echoNode(nch)
  return wrapW(ch)
}

function mixed(n) {
  return Array.from({ length: n }, (_, i) => (i % 2 ? Buffer.from(Array.from({ length: 1 + i * 7 }, (_, k) => (k * 31 + i) & 0xff)) : `text ${i} ✓ ${'x'.repeat(i)}`))
}

for (const direction of DIRECTIONS) {
  describe(`wrtc (libwebrtc M106), ${direction}: data`, () => {
    let c
    beforeAll(async () => {
      c = await call(direction)
      record('wrtc', 'connect', c.connectMs)
    }, 30000)
    afterAll(async () => c?.close())

    it('ordered reliable echo of mixed text and binary keeps order and content', async () => {
      let ch
      if (direction === 'node-offers') {
        echoW(c.first)
        ch = wrapNode(c.peer.defaultChannel)
      } else {
        echoNode(await until(() => c.peer.channels.find((x) => x.label === 'wrtc-first'), 5000))
        ch = wrapW(c.first)
      }
      const sent = mixed(60)
      for (const m of sent) await ch.send(m)
      await until(() => ch.got.length >= sent.length, 10000)
      record('wrtc', 'first-message', performance.now() - c.t0)
      expect(ch.got.length).toBe(sent.length)
      for (let i = 0; i < sent.length; i++) {
        if (typeof sent[i] === 'string') expect(ch.got[i]).toBe(sent[i])
        else expect(Buffer.compare(ch.got[i], sent[i])).toBe(0)
      }
    })

    it('an unreliable (unordered, no retransmits) channel carries messages', async () => {
      const ch = await openChannel(c, 'lossy', 'unreliable')
      const sent = Array.from({ length: 100 }, (_, i) => `u${i}`)
      for (const m of sent) { await ch.send(m); await sleep(2) }
      await until(() => ch.got.length >= 90, 10000)
      await sleep(200)
      // Loopback loses nothing, but unordered delivery may reorder: content is a subset of what was sent.
      expect(new Set(ch.got).size).toBe(ch.got.length)
      for (const m of ch.got) expect(sent).toContain(m)
    })

    it('a channel opened after 2.5 s of silence works', async () => {
      await sleep(2500)
      const ch = await openChannel(c, 'late')
      await ch.send('after the silence')
      await ch.send(Buffer.from([0, 1, 2, 255]))
      await until(() => ch.got.length >= 2, 10000)
      expect(ch.got[0]).toBe('after the silence')
      expect([...ch.got[1]]).toEqual([0, 1, 2, 255])
    })

    it('1 MiB goes there and back intact (64 KiB messages)', async () => {
      const ch = await openChannel(c, 'bulk')
      const blob = Buffer.alloc(1 << 20)
      for (let i = 0; i < blob.length; i++) blob[i] = (i * 2654435761) >>> 24
      const CHUNK = 64 << 10
      for (let o = 0; o < blob.length; o += CHUNK) await ch.send(blob.subarray(o, o + CHUNK))
      await until(() => ch.got.reduce((n, b) => n + b.length, 0) >= blob.length, 20000)
      const back = Buffer.concat(ch.got)
      expect(back.length).toBe(blob.length)
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(blob).digest('hex'))
    }, 30000)
  })
}
