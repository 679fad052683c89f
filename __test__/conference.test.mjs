import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { withServer, transport, until, uid } from './helpers.mjs'
import { toneFrame, amplitudeAt, concat, sleep } from './signals.mjs'

const MANIFEST = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'conference.yaml'), 'utf8')
// Multiples of 50 Hz: a whole number of cycles in every 20 ms frame, so a repeated frame stays
// continuous, and 200 Hz apart, far wider than the analysis window's resolution.
const FREQS = [300, 500, 700, 900]

// Each client sends its tone for `ms`, one 20 ms frame every 20 ms.
async function talk(clients, hubId, ms, who = clients) {
  const end = Date.now() + ms
  await Promise.all(who.map(async (c) => {
    const frame = toneFrame(c.freq, 0.2)
    let next = Date.now()
    while (Date.now() < end) {
      await c.t.sendAudio(hubId, frame)
      next += 20
      await sleep(Math.max(0, next - Date.now()))
    }
  }))
}

// Conference setup: a hub transport with a mixer session and one audio track each way per client.
async function conference(server, n) {
  const hub = await transport(server, uid('conf-hub'))
  const clients = []
  const session = await hub.createSession('conference', { manifest: MANIFEST })
  for (let i = 0; i < n; i++) {
    const t = await transport(server, uid(`conf-c${i}`))
    const c = { t, freq: FREQS[i], heard: [] }
    clients.push(c)
    const peer = await t.connectPeer(hub.peerId)
    await peer.addAudioTrack()
    await until(() => hub.listPeers().includes(t.peerId))
    await hub.getPeer(t.peerId).addAudioTrack()
    peer.on('audio-frame', (f) => c.heard.push(f))
    await session.addPeer(t.peerId)
  }
  return { hub, session, clients }
}

// What each client heard in its last `frames` frames: amplitude per tone frequency.
function spectrum(c, frames) {
  const x = concat(c.heard.slice(-frames))
  return Object.fromEntries(FREQS.map((f) => [f, amplitudeAt(x, f)]))
}

describe('a conference session (AudioMixer)', () => {
  it('four Node peers each hear the three others\' tones and not their own (≥ 20 dB below)', async () => {
    const server = await withServer()
    const { hub, clients } = await conference(server, 4)
    try {
      await talk(clients, hub.peerId, 3000)
      // The last second of what each heard: everyone was talking all through it.
      await until(() => clients.every((c) => c.heard.length >= 100), 10000)
      for (const c of clients) {
        const s = spectrum(c, 50)
        const others = FREQS.filter((f) => f !== c.freq).map((f) => s[f])
        const levels = Object.entries(s).map(([f, a]) => `${f} Hz ${a.toFixed(4)}`).join(', ')
        for (const a of others) expect(a, `client ${c.freq} Hz heard: ${levels}`).toBeGreaterThan(0.1) // sent at 0.2
        expect(s[c.freq], `client ${c.freq} Hz heard: ${levels}`).toBeLessThan(Math.min(...others) / 10)
      }
    } finally {
      for (const c of clients) await c.t.shutdown()
      await hub.shutdown()
      await server.close()
    }
  })

  it('a member who leaves (removed, or disconnected) is no longer heard by the others', async () => {
    const server = await withServer()
    const { hub, session, clients } = await conference(server, 4)
    try {
      await talk(clients, hub.peerId, 1000)
      const [removed, gone, ...stay] = clients
      session.removePeer(removed.t.peerId)
      await gone.t.shutdown()
      await until(() => !session.peers.includes(gone.t.peerId), 10000)
      expect(session.peers.sort()).toEqual(stay.map((c) => c.t.peerId).sort())
      for (const c of stay) c.heard.length = 0
      await talk(clients, hub.peerId, 2000, stay)
      await until(() => stay.every((c) => c.heard.length >= 60), 10000)
      for (const c of stay) {
        const s = spectrum(c, 50)
        const other = stay.find((o) => o !== c).freq
        const levels = Object.entries(s).map(([f, a]) => `${f} Hz ${a.toFixed(4)}`).join(', ')
        expect(s[other], `client ${c.freq} Hz heard: ${levels}`).toBeGreaterThan(0.1)
        for (const left of [removed.freq, gone.freq, c.freq]) {
          expect(s[left], `client ${c.freq} Hz still hears ${left} Hz: ${levels}`).toBeLessThan(s[other] / 10)
        }
      }
    } finally {
      for (const c of clients) await c.t.shutdown()
      await hub.shutdown()
      await server.close()
    }
  })
})
