// A conference: a Node server peer mixes its clients' audio (examples/conference.yaml, an
// AudioMixer) and sends each client the mix of everyone else. Three clients in this same script
// each send a tone and report which tones they hear.
//
//   node examples/conference-server.mjs
//
// Prints what each client heard, then `conference ok: ...` and exits 0 when every client heard
// the two others and not itself (exit 1 otherwise).
import { SignalingServer, WebRtcTransport } from 'remotemedia-webrtc'
import { readFileSync } from 'node:fs'

const RATE = 48000
const FRAME = 960 // 20 ms at 48 kHz
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// --- The server: signaling, and a peer that runs the conference session. -------------------
const signaling = await SignalingServer.listen({ host: '127.0.0.1', port: 0 })
const server = new WebRtcTransport({ signalingUrl: signaling.url, peerId: 'conference', bindAddress: '127.0.0.1' })
await server.start()
const manifest = readFileSync(new URL('./conference.yaml', import.meta.url), 'utf8')
const session = await server.createSession('room', { manifest })

// A client joins the room when its audio arrives: the server then adds an audio track back to
// it (for its mix). Waiting for the client's track first keeps the two sides from renegotiating
// at the same moment, which the transport does not resolve yet (neither track would work).
server.on('peer-connected', (peer) => {
  peer.once('audio-frame', async () => {
    try {
      await peer.addAudioTrack()
      await session.addPeer(peer.peerId)
    } catch (e) {
      console.error(`${peer.peerId} could not join: ${e.message}`)
    }
  })
})

// --- A client: sends its tone to the server, records what comes back. ----------------------
async function client(name, freq) {
  const t = new WebRtcTransport({ signalingUrl: signaling.url, peerId: name, bindAddress: '127.0.0.1' })
  await t.start()
  const peer = await t.connectPeer('conference')
  await peer.addAudioTrack()
  const heard = []
  peer.on('audio-frame', (f) => heard.push(f.samples))
  const joined = new Promise((resolve) => peer.once('track', resolve)) // the server's track back
  // One 20 ms frame holds a whole number of cycles of a multiple of 50 Hz: send it again and again.
  const frame = Float32Array.from({ length: FRAME }, (_, i) => 0.2 * Math.sin((2 * Math.PI * freq * i) / RATE))
  return { name, freq, t, peer, heard, frame, joined }
}

const clients = [await client('alice', 300), await client('bob', 500), await client('carol', 700)]

// A client's track is negotiated once `addAudioTrack()` resolves. Each client sends silence
// until the server's track back arrives (the server adds it on the client's first audio), then
// waits until the server's `addAudioTrack()` has resolved too.
const silence = new Float32Array(FRAME)
async function until(what, ok) {
  for (let i = 0; i < 500; i++) { // 10 s
    if (await ok()) return
    await sleep(20)
  }
  throw new Error(`timed out: ${what}`)
}
for (const c of clients) {
  let joined = false
  c.joined.then(() => { joined = true })
  await until(`${c.name} joins`, async () => {
    await c.t.sendAudio('conference', silence)
    return joined && session.peers.includes(c.name)
  })
  await until(`server → ${c.name} audio`, () => server.sendAudio(c.name, silence).then(() => true, () => false))
}

// Everyone talks for three seconds, one frame every 20 ms.
const end = Date.now() + 3000
await Promise.all(clients.map(async (c) => {
  for (let next = Date.now(); Date.now() < end; next += 20) {
    await c.t.sendAudio('conference', c.frame)
    await sleep(Math.max(0, next + 20 - Date.now()))
  }
}))
await sleep(300) // the last mixes are on their way

// Goertzel: the amplitude of one frequency in a block of samples.
function amplitudeAt(x, freq) {
  const coeff = 2 * Math.cos((2 * Math.PI * freq) / RATE)
  let s1 = 0
  let s2 = 0
  for (const v of x) [s1, s2] = [v + coeff * s1 - s2, s1]
  return (2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - coeff * s1 * s2))) / x.length
}

let ok = true
for (const c of clients) {
  const last = c.heard.slice(-50) // the last second
  const x = new Float32Array(last.length * FRAME)
  last.forEach((s, i) => x.set(s.subarray(0, FRAME), i * FRAME))
  const others = clients.filter((o) => o !== c)
  const level = (f) => amplitudeAt(x, f)
  const heardOthers = others.filter((o) => level(o.freq) > 0.05) // each was sent at 0.2
  const own = level(c.freq)
  const quietest = Math.min(...others.map((o) => level(o.freq)))
  const ownDb = 20 * Math.log10(Math.max(own, 1e-9) / quietest)
  const good = last.length === 50 && heardOthers.length === others.length && ownDb <= -20
  ok &&= good
  console.log(`${c.name} (${c.freq} Hz) hears ${heardOthers.map((o) => `${o.name} ${o.freq} Hz`).join(', ') || 'nobody'}; ` +
    `own tone ${ownDb.toFixed(0)} dB below the quietest other${good ? '' : '  <-- wrong'}`)
}

for (const c of clients) await c.t.shutdown()
await server.shutdown()
await signaling.close()
if (ok) console.log('conference ok: every client heard the two others and not itself')
else {
  console.log('conference failed')
  process.exitCode = 1
}
