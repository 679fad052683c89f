// Session and pipeline benchmarks (issue 5). Everything stays on 127.0.0.1: one SignalingServer
// listening on 127.0.0.1 (port 0) and transports bound to 127.0.0.1, all in this one process.
//
//   create   createSession() → resolved, then removeSession(), N times: without a manifest, and
//            with a manifest (examples/conference.yaml's text, parsed, validated and built).
//   routing  "1 000 audio chunks per second per peer, 10 peers, without drops". Opus over RTP
//            carries at most 100 packets/s per peer here (the transport takes 10/20/40/60 ms
//            frames), so 1 000 chunks/s per peer cannot cross the network; two measurements:
//            (a) layer: one Pipeline (loopback, then the AudioMixer conference manifest) fed
//                1 ms chunks (48 samples) for 10 peers on a 1 ms schedule (10 000 chunks/s in
//                all) from JS through napi; drops = chunks in − frames out; lag = how late the
//                last chunk of a tick ran after its due time.
//            (b) network: 10 member transports each send 10 ms Opus frames (100/s) to a hub
//                whose session loops them back (decode → pipeline → encode → send); each member
//                counts the frames it gets back: drops = sent − returned.
//   audio    mouth-to-ear through a session: A sends 20 ms frames, every 5th with a 2 ms burst;
//            B's session (loopback manifest) returns A's audio; time from A's sendAudio() call
//            to A's 'audio-frame' event holding the burst. Both transports: jitterBufferMs 50,
//            jitterBufferMinMs BENCH_JITTER_MIN_MS (default 20, the goal's "20 ms jitter buffer";
//            50 = no lower floor), after BENCH_WARMUP_S (6) s of audio for the adaptive buffer to
//            settle. Members' audio enters B's pipeline at arrival, so A's buffer is the one inside.
//   video    A sends 640x480 I420 at 30 fps (VP8) with the frame number stamped in luma
//            blocks; B's session (Input → VideoScale 320x240 → Output) returns it; time from
//            A's sendVideo() call to A's 'video-frame' event with that number (two encodes, two
//            decodes, the scale, two jitter buffers). Run twice: default buffers (jitterBufferMs
//            100), and jitterBufferMs 50 / jitterBufferMinMs BENCH_JITTER_MIN_MS after a warm-up.
//
// Usage: node benches/sessions.mjs   (env BENCH_CREATE=2000, BENCH_CREATE_MANIFEST=300,
//        BENCH_ROUTE_S=5, BENCH_NET_S=5, BENCH_CLICKS=100, BENCH_VIDEO_FRAMES=300,
//        BENCH_JITTER_MIN_MS=20, BENCH_WARMUP_S=6,
//        BENCH_ONLY=create,routing,audio,video). Unit tests assert behaviour; numbers only here.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import {
  ROOT_DIR, fmt, loadRemotemedia, machineInfo, markdownTable, now, processDeadline, sleep, stats,
} from './common.mjs'

const envInt = (k, d, min = 1) => Math.max(min, Math.floor(Number(process.env[k] ?? d)) || d)
const N_CREATE = envInt('BENCH_CREATE', 2000)
const N_CREATE_MANIFEST = envInt('BENCH_CREATE_MANIFEST', 300)
const ROUTE_S = envInt('BENCH_ROUTE_S', 5)
const NET_S = envInt('BENCH_NET_S', 5)
const CLICKS = envInt('BENCH_CLICKS', 100)
const VIDEO_FRAMES = envInt('BENCH_VIDEO_FRAMES', 300)
const JITTER_MIN_MS = envInt('BENCH_JITTER_MIN_MS', 20, 10)
const WARMUP_S = envInt('BENCH_WARMUP_S', 6, 0)
const LOW = { jitterBufferMs: 50, jitterBufferMinMs: JITTER_MIN_MS }
const ONLY = new Set((process.env.BENCH_ONLY ?? 'create,routing,audio,video').split(',').map((x) => x.trim()))
const PEERS = 10

const lib = loadRemotemedia()
const { WebRtcTransport, SignalingServer, Pipeline } = lib

const LOOPBACK = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n'
const SCALE = 'nodes:\n  - { id: in, node_type: Input }\n  - { id: scale, node_type: VideoScale, params: { width: 320, height: 240 } }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: scale }\n  - { from: scale, to: out }\n'
const CONFERENCE = readFileSync(path.join(ROOT_DIR, 'examples', 'conference.yaml'), 'utf8')

// Percentile with p99 (stats() has p50/p95).
function pStats(values) {
  const s = [...values].sort((a, b) => a - b)
  return { ...stats(values), p99: s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)] }
}

let seq = 0
async function transport(server, name, extra = {}) {
  const t = new WebRtcTransport({ signalingUrl: server.url, peerId: `${name}-${process.pid}-${++seq}`, bindAddress: '127.0.0.1', ...extra })
  await t.start()
  return t
}

async function retry(fn, ms = 5000) {
  const end = now() + ms
  for (;;) {
    try { return await fn() } catch (e) { if (now() > end) throw e }
    await sleep(10)
  }
}

// 1. Session creation.
async function benchCreate(server) {
  const t = await transport(server, 'create')
  try {
    const time = async (n, options) => {
      const ms = []
      for (let i = 0; i < n; i++) {
        const t0 = now()
        await t.createSession(`s${i}`, options)
        ms.push(now() - t0)
        await t.removeSession(`s${i}`)
      }
      return pStats(ms)
    }
    await time(50, {}) // warm-up
    return { plain: await time(N_CREATE, {}), manifest: await time(N_CREATE_MANIFEST, { manifest: CONFERENCE }), loopback: await time(N_CREATE_MANIFEST, { manifest: LOOPBACK }) }
  } finally {
    await t.shutdown()
  }
}

// 2a. The routing layer: one pipeline, 10 peers × 1 000 chunks/s of 1 ms.
async function benchLayer(manifest) {
  const p = Pipeline.fromText(manifest)
  const chunk = Float32Array.from({ length: 48 }, (_, i) => 0.1 * Math.sin(i / 3))
  const ids = Array.from({ length: PEERS }, (_, i) => `p${i}`)
  const sent = new Array(PEERS).fill(0)
  const got = new Array(PEERS).fill(0)
  const exec = []
  const lag = []
  const t0 = now()
  const ticks = ROUTE_S * 1000
  for (let k = 0; k < ticks; k++) {
    // Wait for tick k's due time (1 ms apart), yielding to the event loop meanwhile.
    while (now() - t0 < k) await new Promise((r) => setImmediate(r))
    for (let i = 0; i < PEERS; i++) {
      const a = now()
      const outs = await p.execute({ samples: chunk, sampleRate: 48000, channels: 1, peerId: ids[i], timestampUs: k * 1000 })
      exec.push((now() - a) * 1000)
      sent[i]++
      for (const o of outs) if (o.frame) got[ids.indexOf(o.frame.peerId ?? ids[i])]++
    }
    lag.push(now() - t0 - k)
  }
  const elapsed = (now() - t0) / 1000
  const inn = sent.reduce((a, b) => a + b, 0)
  const out = got.reduce((a, b) => a + b, 0)
  return { chunks: inn, out, drops: inn - out, perPeerRate: sent[0] / elapsed, execUs: pStats(exec), lagMs: pStats(lag) }
}

// 2b. The network path: 10 members → hub session (loopback) → back, 10 ms frames.
async function benchNetwork(server) {
  const hub = await transport(server, 'hub', { maxPeers: PEERS + 2 })
  const members = []
  try {
    for (let i = 0; i < PEERS; i++) members.push(await transport(server, `m${i}`))
    const session = await hub.createSession('net', { manifest: LOOPBACK, maxPeers: PEERS })
    const returned = new Array(PEERS).fill(0)
    const concealed = new Array(PEERS).fill(0)
    for (const [i, m] of members.entries()) {
      const peer = await m.connectPeer(hub.peerId)
      await peer.addAudioTrack()
      await hub.getPeer(m.peerId).addAudioTrack()
      // Counted from when the timed frames start (the warm-up's have arrived by then); frames
      // filled in by loss concealment are counted apart.
      peer.on('audio-frame', (f) => {
        if (f.samples.length !== 480) return
        if (f.concealed) concealed[i]++
        else returned[i]++
      })
      await session.addPeer(m.peerId)
    }
    const silence = new Float32Array(480)
    // Both directions up before counting: each member has heard the hub's own audio.
    const heard = new Array(PEERS).fill(0)
    const hubGot = new Array(PEERS).fill(0)
    members.forEach((m, i) => {
      m.getPeer(hub.peerId).on('audio-frame', () => { heard[i]++ })
      hub.getPeer(m.peerId).on('audio-frame', (f) => { if (!f.concealed) hubGot[i]++ })
    })
    await Promise.all(members.map((m) => retry(() => m.sendAudio(hub.peerId, silence))))
    const end = now() + 10_000
    while (heard.some((h) => h === 0) && now() < end) {
      await Promise.all(members.map((m) => hub.sendAudio(m.peerId, silence).catch(() => {})))
      await sleep(10)
    }
    const notUp = heard.filter((h) => h === 0).length
    await sleep(500)
    hubGot.fill(0)
    returned.fill(0)
    concealed.fill(0)
    const marked = Float32Array.from({ length: 480 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 1000 * i) / 48000)) // 10 whole periods
    const sent = new Array(PEERS).fill(0)
    const frames = NET_S * 100
    const t0 = now()
    for (let k = 0; k < frames; k++) {
      while (now() - t0 < k * 10) await sleep(1)
      await Promise.all(members.map((m, i) => m.sendAudio(hub.peerId, marked).then(() => { sent[i]++ }, () => {})))
    }
    const elapsed = (now() - t0) / 1000
    await sleep(1000) // the last frames' round trip
    const inn = sent.reduce((a, b) => a + b, 0)
    const out = returned.reduce((a, b) => a + b, 0)
    return { peers: PEERS, notUp, hubGot: hubGot.reduce((a, b) => a + b, 0), sent: inn, returned: out, drops: inn - out, concealed: concealed.reduce((a, b) => a + b, 0), perPeerRate: sent[0] / elapsed, minPerPeer: Math.min(...returned), maxPerPeer: Math.max(...returned) }
  } finally {
    for (const m of members) await m.shutdown()
    await hub.shutdown()
  }
}

// 3. Mouth-to-ear through a session.
const CLICK_AT = 100
function clickFrame() {
  const a = new Float32Array(960)
  for (let i = 0; i < 96; i++) a[CLICK_AT + i] = 0.8 * Math.sin((2 * Math.PI * 3000 * i) / 48000)
  return a
}
async function benchAudio(server) {
  const a = await transport(server, 'ma', LOW)
  const b = await transport(server, 'mb', LOW)
  try {
    const peer = await a.connectPeer(b.peerId)
    await peer.addAudioTrack()
    await b.getPeer(a.peerId).addAudioTrack()
    const s = await b.createSession('echo', { manifest: LOOPBACK })
    await s.addPeer(a.peerId)
    const silence = new Float32Array(960)
    const click = clickFrame()
    await retry(() => a.sendAudio(b.peerId, silence))
    await retry(() => b.sendAudio(a.peerId, silence))
    let pending = null
    let lastDetect = -Infinity
    const lat = []
    let missed = 0
    let spurious = 0
    const bufA = []
    peer.on('audio-frame', (f) => {
      bufA.push(f.bufferDelayMs)
      let hit = false
      for (let i = 0; i < f.samples.length; i++) if (Math.abs(f.samples[i]) > 0.2) { hit = true; break }
      if (!hit) return
      const t = now()
      if (pending) { lat.push(t - pending); pending = null; lastDetect = t } else if (t - lastDetect > 30) spurious++
    })
    const w0 = now()
    for (let k = 0; k < Math.max(20, WARMUP_S * 50); k++) {
      while (now() - w0 < k * 20) await sleep(1)
      await a.sendAudio(b.peerId, silence)
    }
    bufA.length = 0
    const t0 = now()
    for (let k = 0; k < CLICKS * 5; k++) {
      while (now() - t0 < k * 20) await sleep(1)
      if (k % 5 === 0) {
        if (pending) missed++
        pending = now()
        await a.sendAudio(b.peerId, click)
      } else {
        await a.sendAudio(b.peerId, silence)
      }
    }
    await sleep(300)
    if (pending) missed++
    const target = peer.getBufferStatistics().audio.targetDelayMs
    return { sent: CLICKS, detected: lat.length, missed, spurious, latency: pStats(lat), bufferA: pStats(bufA), targetA: target }
  } finally {
    await a.shutdown()
    await b.shutdown()
  }
}

// 4. Video through a VideoScale session. The frame number is 16 luma blocks of 32x32 in the top
// band (16x16 once scaled): white = 1, black = 0.
const W = 640
const H = 480
function videoFrame(n) {
  const buf = Buffer.alloc((W * H * 3) / 2, 128)
  for (let y = 32; y < H; y++) for (let x = 0; x < W; x++) buf[y * W + x] = (x + y + n * 4) & 0xff
  for (let bit = 0; bit < 16; bit++) {
    const v = (n >> bit) & 1 ? 235 : 16
    for (let y = 0; y < 32; y++) buf.fill(v, y * W + bit * 32 + 64, y * W + bit * 32 + 96)
  }
  return buf
}
function readNumber(f) {
  const scale = f.width / W
  let n = 0
  for (let bit = 0; bit < 16; bit++) {
    const x = Math.round((bit * 32 + 64 + 16) * scale)
    const y = Math.round(16 * scale)
    if (f.data[y * f.width + x] > 128) n |= 1 << bit
  }
  return n
}
async function benchVideo(server, jitter = {}, warmupS = 0.3) {
  const a = await transport(server, 'va', { videoCodec: 'vp8', ...jitter })
  const b = await transport(server, 'vb', { videoCodec: 'vp8', ...jitter })
  try {
    const peer = await a.connectPeer(b.peerId)
    await peer.addVideoTrack({ width: W, height: H, framerate: 30, bitrate: 1_000_000, keyframeInterval: 60 })
    await b.getPeer(a.peerId).addVideoTrack({ width: 320, height: 240, framerate: 30, bitrate: 400_000, keyframeInterval: 60 })
    const s = await b.createSession('scale', { manifest: SCALE })
    await s.addPeer(a.peerId)
    const sentAt = new Map()
    const lat = []
    let wrongSize = 0
    let unknown = 0
    const bufA = []
    const bufB = []
    b.getPeer(a.peerId).on('video-frame', (f) => bufB.push(f.bufferDelayMs))
    peer.on('video-frame', (f) => {
      const t = now()
      bufA.push(f.bufferDelayMs)
      if (f.width !== 320 || f.height !== 240) { wrongSize++; return }
      const n = readNumber(f)
      const t0 = sentAt.get(n)
      if (t0 === undefined) { unknown++; return }
      sentAt.delete(n)
      lat.push(t - t0)
    })
    await retry(() => a.sendVideo(b.peerId, { data: videoFrame(1), width: W, height: H, keyframe: true }))
    // Warm-up (the adaptive buffers settle): frames numbered 1, unreadable as a timed number.
    const w0 = now()
    for (let k = 0; k * 33.333 < warmupS * 1000; k++) {
      while (now() - w0 < k * 33.333) await sleep(1)
      await a.sendVideo(b.peerId, { data: videoFrame(1), width: W, height: H, timestampUs: Math.round(k * 33333) })
    }
    await sleep(300)
    sentAt.clear()
    lat.length = 0
    unknown = 0
    wrongSize = 0
    bufA.length = 0
    bufB.length = 0
    const start = now()
    for (let k = 0; k < VIDEO_FRAMES; k++) {
      while (now() - start < k * 33.333) await sleep(1)
      const n = 100 + k // never 0 or the warm-up frame
      sentAt.set(n, now())
      await a.sendVideo(b.peerId, { data: videoFrame(n), width: W, height: H, timestampUs: Math.round((k + 1) * 33333 + warmupS * 1e6), keyframe: k === 0 })
    }
    await sleep(500)
    return { sent: VIDEO_FRAMES, returned: lat.length, lost: sentAt.size, wrongSize, unreadable: unknown, latency: pStats(lat), bufferB: pStats(bufB), bufferA: pStats(bufA) }
  } finally {
    await a.shutdown()
    await b.shutdown()
  }
}

async function main() {
  const stop = processDeadline(10 * 60_000, 'sessions')
  const server = await SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const r = {}
  try {
    if (ONLY.has('create')) r.create = await benchCreate(server)
    if (ONLY.has('routing')) {
      r.layerLoopback = await benchLayer(LOOPBACK)
      r.layerConference = await benchLayer(CONFERENCE)
      r.network = await benchNetwork(server)
    }
    if (ONLY.has('audio')) r.audio = await benchAudio(server)
    if (ONLY.has('video')) {
      r.video = await benchVideo(server)
      r.videoLow = await benchVideo(server, LOW, WARMUP_S)
    }
  } finally {
    await server.close()
  }
  console.log(`## Sessions and pipelines (node benches/sessions.mjs)\n\nMachine: ${machineInfo()}\n`)
  const row = (name, s, unit = 'ms', d = 3) => [name, s.n, fmt(s.p50, d), fmt(s.p95, d), fmt(s.p99, d), fmt(s.max, d), unit]
  if (r.create) {
    console.log('### Session creation: createSession() call → resolved\n')
    console.log(markdownTable(['what', 'n', 'p50', 'p95', 'p99', 'max', 'unit'], [
      row('no manifest', r.create.plain),
      row('manifest examples/conference.yaml (parse, validate, build)', r.create.manifest),
      row('manifest loopback (Input → Output)', r.create.loopback),
    ]))
  }
  if (r.layerLoopback) {
    console.log('\n### Routing: 10 peers × 1 000 chunks/s (1 ms, 48 samples) into one pipeline (napi, JS thread)\n')
    const l = (name, x) => [name, x.chunks, x.out, x.drops, fmt(x.perPeerRate, 0), fmt(x.execUs.p50, 1), fmt(x.execUs.p99, 1), fmt(x.lagMs.p50, 2), fmt(x.lagMs.p99, 2), fmt(x.lagMs.max, 2)]
    console.log(markdownTable(['manifest', 'chunks in', 'frames out', 'drops', 'chunks/s per peer', 'execute p50 µs', 'execute p99 µs', 'tick lag p50 ms', 'p99 ms', 'max ms'], [
      l('loopback', r.layerLoopback), l('conference (AudioMixer)', r.layerConference),
    ]))
    const n = r.network
    console.log(`\n### Routing over the network: ${n.peers} members × 10 ms Opus frames → hub session (loopback) → back\n`)
    console.log(markdownTable(['members', 'return path not up', 'frames sent', 'decoded at the hub', 'returned', 'drops', 'concealed (PLC/FEC) frames', 'frames/s per member', 'returned per member min / max'], [
      [n.peers, n.notUp, n.sent, n.hubGot, n.returned, n.drops, n.concealed, fmt(n.perPeerRate, 0), `${n.minPerPeer} / ${n.maxPerPeer}`],
    ]))
  }
  if (r.audio) {
    const x = r.audio
    console.log(`\n### Audio mouth-to-ear through a session (loopback manifest), jitterBufferMs 50, jitterBufferMinMs ${JITTER_MIN_MS} both sides, after ${WARMUP_S} s of warm-up\n`)
    console.log(markdownTable(['clicks', 'detected', 'missed', 'spurious', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'], [
      [x.sent, x.detected, x.missed, x.spurious, fmt(x.latency.p50), fmt(x.latency.p95), fmt(x.latency.p99), fmt(x.latency.max)],
    ]))
    console.log(`\nA's jitter buffer (return leg) bufferDelayMs: p50 ${fmt(x.bufferA.p50)}, p95 ${fmt(x.bufferA.p95)} ms; target at the end ${fmt(x.targetA)} ms`)
  }
  for (const [x, what] of [[r.video, 'default jitter buffers (jitterBufferMs 100)'], [r.videoLow, `jitterBufferMs 50, jitterBufferMinMs ${JITTER_MIN_MS}, after ${WARMUP_S} s of warm-up`]]) {
    if (!x) continue
    console.log(`\n### Video 640x480 → session VideoScale 320x240 → back (VP8, 30 fps), ${what}\n`)
    console.log(markdownTable(['frames', 'returned', 'lost', 'wrong size', 'unreadable', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'], [
      [x.sent, x.returned, x.lost, x.wrongSize, x.unreadable, fmt(x.latency.p50), fmt(x.latency.p95), fmt(x.latency.p99), fmt(x.latency.max)],
    ]))
    console.log('\nTime in the jitter buffers (frames\' bufferDelayMs), ms:\n')
    console.log(markdownTable(['leg', 'p50', 'p95', 'max'], [
      ['A → B (B\'s buffer)', fmt(x.bufferB.p50), fmt(x.bufferB.p95), fmt(x.bufferB.max)],
      ['B → A (A\'s buffer)', fmt(x.bufferA.p50), fmt(x.bufferA.p95), fmt(x.bufferA.max)],
    ]))
  }
  console.log(`\n${JSON.stringify(r)}`)
  stop()
  process.exit(0)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
