// A full mesh under load (issue 6): N transports in one process (default 10), every pair
// connected (autoConnect), every transport sending 20 ms Opus audio to all its peers
// (broadcastAudio) and a reliable data message to each peer every 100 ms, for BENCH_MESH_S
// seconds (default 600 = the CI-sized 10 minutes; 1800 for the 30-minute run).
// Reported every 30 s: RSS (after GC), frames and messages received, errors. At the end: crashes
// (the process survives and every peer is still connected), RSS after the first minute against
// the end (goal: flat within 10 %), messages lost or out of order.
//
//   node --expose-gc benches/mesh.mjs            # 10 minutes
//   BENCH_MESH_S=60 BENCH_MESH_N=6 node --expose-gc benches/mesh.mjs
import { loadRemotemedia, sleep } from './common.mjs'

const { SignalingServer, WebRtcTransport } = loadRemotemedia()
const N = Math.max(2, Number(process.env.BENCH_MESH_N ?? 10))
const SECONDS = Math.max(10, Number(process.env.BENCH_MESH_S ?? 600))
const WARMUP_S = Math.min(60, SECONDS / 5)

const gc = () => { if (global.gc) global.gc() }
const rssMb = () => process.memoryUsage().rss / 1048576
const fmt = (x, d = 1) => x.toFixed(d)

const server = await SignalingServer.listen({ host: '127.0.0.1', port: 0, maxPeers: N + 2 })
const ts = []
const stats = { framesIn: 0, concealed: 0, messagesIn: 0, outOfOrder: 0, errors: [] }
const lastSeq = new Map() // "from>to" → last message number
const incoming = new Map() // "local>remote" → the default channel the remote opened
// Counts a transport's received messages, checking each sender's numbering.
function listen(t, ch) {
  ch.on('message', (m) => {
    if (m.kind !== 'json') return
    stats.messagesIn++
    const key = `${m.data.from}>${t.peerId}`
    const prev = lastSeq.get(key) ?? -1
    if (m.data.n !== prev + 1) stats.outOfOrder++
    lastSeq.set(key, m.data.n)
  })
}
for (let i = 0; i < N; i++) {
  const t = new WebRtcTransport({
    signalingUrl: server.url,
    peerId: `mesh-${i}`,
    bindAddress: '127.0.0.1',
    autoConnect: true,
    maxPeers: N,
  })
  t.on('error', (e) => stats.errors.push(`${t.peerId}: ${e.code} ${e.message}`))
  t.on('audio-frame', (f) => {
    stats.framesIn++
    if (f.concealed) stats.concealed++
  })
  t.on('data-channel', (ch, peer) => {
    if (ch.label === 'default') incoming.set(`${t.peerId}>${peer.peerId}`, ch)
    listen(t, ch)
  })
  ts.push(t)
}
for (const t of ts) await t.start()

// Every pair connected (each side sees N-1 peers), then audio tracks on every connection, added
// by the side that dialled (no two offers crossing for one pair).
const deadline = Date.now() + 60_000
while (ts.some((t) => t.listPeers().length < N - 1)) {
  if (Date.now() > deadline) throw new Error(`mesh incomplete: ${ts.map((t) => t.listPeers().length).join(',')}`)
  await sleep(50)
}
// The default channel of a connection we dialled: its messages come to us there.
for (const t of ts) {
  for (const id of t.listPeers()) {
    const p = t.getPeer(id)
    if (p.outgoing && p.defaultChannel) listen(t, p.defaultChannel)
  }
}
for (const pass of [true, false]) {
  for (const t of ts) {
    for (const id of t.listPeers()) {
      const p = t.getPeer(id)
      if (p.outgoing === pass && !p.hasAudioTrack) await p.addAudioTrack().catch((e) => stats.errors.push(`track: ${e.code}`))
    }
  }
}

const tone = Float32Array.from({ length: 960 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / 48000))
let sent = { frames: 0, messages: 0 }
const seq = new Map()
let running = true
const audioLoop = (async () => {
  let next = performance.now()
  while (running) {
    for (const t of ts) {
      const r = await t.broadcastAudio(tone).catch(() => null)
      if (r) sent.frames += r.sent
    }
    next += 20
    await sleep(Math.max(0, next - performance.now()))
  }
})()
const dataLoop = (async () => {
  while (running) {
    for (const t of ts) {
      for (const id of t.listPeers()) {
        const key = `${t.peerId}>${id}`
        const ch = t.getPeer(id)?.defaultChannel ?? incoming.get(key)
        if (!ch || ch.readyState !== 'open') continue
        const n = seq.get(key) ?? 0
        seq.set(key, n + 1)
        ch.send({ from: t.peerId, n }).then(() => { sent.messages++ }, (e) => stats.errors.push(`send ${key}: ${e.code}`))
      }
    }
    await sleep(100)
  }
})()

console.log(`# mesh: ${N} transports, ${(N * (N - 1)) / 2} connections, ${SECONDS} s (${new Date().toISOString()}, node ${process.version})`)
console.log('| t s | RSS MB | JS heap total / used / external MB | RSS − JS MB | frames in | concealed | messages in | out of order | errors |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
const t0 = Date.now()
let warm = null
let last = null
// RSS at the first sample after V8's heap last changed size (its young generation grows in
// steps under this allocation rate, unless node runs with --min-semi-space-size=16).
let heapSettled = null
let heapTotal = 0
while (Date.now() - t0 < SECONDS * 1000) {
  await sleep(Math.min(30_000, SECONDS * 1000 - (Date.now() - t0)))
  // A full GC, then a turn of the event loop for the finalizers of the collected frames (they
  // free the frames' native memory), then another GC: what is left is what is still reachable.
  gc()
  await new Promise((r) => setImmediate(r))
  await sleep(200)
  gc()
  const s = (Date.now() - t0) / 1000
  const rss = rssMb()
  const m = process.memoryUsage()
  const nativeMb = rss - (m.heapTotal + m.external) / 1048576
  if (warm === null && s >= WARMUP_S) warm = { rss, nativeMb }
  last = { rss, nativeMb }
  if (m.heapTotal !== heapTotal) { heapTotal = m.heapTotal; heapSettled = null } else if (!heapSettled) heapSettled = { rss, s }
  console.log(`| ${fmt(s, 0)} | ${fmt(rss)} | ${fmt(m.heapTotal / 1048576)} / ${fmt(m.heapUsed / 1048576)} / ${fmt(m.external / 1048576)} | ${fmt(nativeMb)} | ${stats.framesIn} | ${stats.concealed} | ${stats.messagesIn} | ${stats.outOfOrder} | ${stats.errors.length} |`)
}
running = false
await audioLoop
await dataLoop
await sleep(1000)
const connected = ts.map((t) => t.listPeers().length)
const allConnected = connected.every((n) => n === N - 1)
console.log()
console.log(`frames sent ${sent.frames}, received ${stats.framesIn} (${fmt((100 * stats.framesIn) / Math.max(1, sent.frames))} %, concealed ${stats.concealed}); ` +
  `messages sent ${sent.messages}, received ${stats.messagesIn}, out of order ${stats.outOfOrder}`)
console.log(`still connected: ${allConnected ? 'every pair' : connected.join(',')}; errors: ${stats.errors.length}${stats.errors.length ? ` (first: ${stats.errors[0]})` : ''}`)
const w = warm ?? last
console.log(`RSS after warm-up (${fmt(WARMUP_S, 0)} s) ${fmt(w.rss)} MB → end ${fmt(last.rss)} MB: ${fmt(((last.rss - w.rss) / w.rss) * 100)} % (goal: within 10 %); ` +
  `without the JS heap and external buffers ${fmt(w.nativeMb)} → ${fmt(last.nativeMb)} MB: ${fmt(((last.nativeMb - w.nativeMb) / w.nativeMb) * 100)} %`)
if (heapSettled) {
  console.log(`RSS from ${fmt(heapSettled.s, 0)} s (V8's heap at its final size) ${fmt(heapSettled.rss)} MB → end ${fmt(last.rss)} MB: ${fmt(((last.rss - heapSettled.rss) / heapSettled.rss) * 100)} %`)
}
for (const t of ts) await t.shutdown()
await server.close()
