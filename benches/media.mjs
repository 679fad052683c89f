// Media benchmarks (issue 3): Opus audio and VP8/VP9 720p video between remotemedia-webrtc
// transports on loopback. Every transport binds to 127.0.0.1 and meets its peer through a
// SignalingServer listening on 127.0.0.1 (port 0) in this, the parent, process. Every
// measurement runs in a child process of its own.
//
//   audio   (one process, pair a → b, Opus 20 ms mono 64 kb/s complexity 10, 440 Hz tone)
//           sendAudio() timed two ways per frame: "sync" = call → promise returned (JS checks,
//           napi, track lookup, Opus encode: sendAudio encodes on the JS thread) and "whole" =
//           call → promise resolved (+ RTP packetize, SRTP, UDP write, the JS thread woken up).
//           Unpaced (next frame as soon as the previous promise resolved) and paced (every
//           20 ms). Receive side: 'audio-frame' handler time − frame.wallClockUs.
//           Then "clicks": silence with a 2 ms burst every 5th frame, time from sendAudio()
//           to the 'audio-frame' event whose samples hold the burst.
//   video   (one process per codec, pair a → b, 1280x720 I420, 30 fps, 2 Mb/s, keyframe every
//           60 frames) a moving test pattern, paced at 30 fps, each sendVideo() awaited:
//           sendVideo() call → resolved; process CPU (send + receive of this one direction);
//           end-to-end sendVideo() call → 'video-frame' handler (the frame number is written
//           into the picture as 16 luma blocks and read back at the receiver); then the same
//           stream with no 'video-frame' listener, for the CPU difference.
//   split   (two processes: tx streams to rx, once with VP8 for audio then video, once with
//           VP9 for video) per frame: rx's JS-thread time (performance.eventLoopUtilization,
//           minus the rate of the same pair idle) and its GC time, both processes' CPU and
//           context switches; a window with no listener, then one with a listener reading
//           data[0]: the cost of handing frames to JS.
//   memory  (one process per codec, node --expose-gc) RSS with N pairs streaming audio +
//           720p video one way, against the same pairs connected with tracks but idle, and
//           against the process before any pair; VP8 once more with glibc's mmap threshold
//           fixed (MALLOC_MMAP_THRESHOLD_=131072) to show what the allocator keeps.
//   codec   (only with BENCH_CODEC=1) runs `cargo bench -p remotemedia-webrtc --bench codec`
//           (criterion filter: opus_encode_20ms_1ch$) and takes the raw libopus/libvpx p50/p95
//           lines it prints, for the codec-only reference.
//
// Usage: node benches/media.mjs   (env BENCH_AUDIO_FRAMES=2000 unpaced, BENCH_AUDIO_PACED=1000,
//        BENCH_CLICKS=100, BENCH_VIDEO_FRAMES=300, BENCH_MEM_PAIRS=3, BENCH_CODEC=0,
//        BENCH_ONLY=audio,video,split,memory).
//        Internal child modes: --child audio|video|memory|split-rx|split-tx ...
import { execFile, fork } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import {
  ROOT_DIR, childMain, fmt, loadRemotemedia, machineInfo, markdownTable, now, procCounts,
  processDeadline, runJsonChild, sleep, stats, udpRcvbufErrors, withTimeout,
} from './common.mjs'
import { rmOpenPair } from './peers.mjs'

const SCRIPT = fileURLToPath(import.meta.url)
const envInt = (k, d, min = 1) => Math.max(min, Math.floor(Number(process.env[k] ?? d)) || d)
const AUDIO_UNPACED = envInt('BENCH_AUDIO_FRAMES', 2000)
const AUDIO_PACED = envInt('BENCH_AUDIO_PACED', 1000)
const CLICKS = envInt('BENCH_CLICKS', 100)
const VIDEO_FRAMES = envInt('BENCH_VIDEO_FRAMES', 300)
const MEM_PAIRS = envInt('BENCH_MEM_PAIRS', 3)
const RUN_CODEC = process.env.BENCH_CODEC === '1'
// BENCH_ONLY=audio,video,split,memory runs only those parts (all by default).
const ONLY = new Set((process.env.BENCH_ONLY ?? 'audio,video,split,memory').split(',').map((x) => x.trim()))
const skipped = { error: 'skipped (BENCH_ONLY)' }

const RATE = 48_000
const FRAME = 960 // 20 ms mono
const W = 1280
const H = 720
const FPS = 30
const VIDEO_BITRATE = 2_000_000
const VIDEO_WARMUP = 30 // frames sent before the measured ones (keyframe + rate control)
const NO_LISTENER_FRAMES = 150
const PATTERN_FRAMES = 32 // the pattern repeats seamlessly every 32 frames
const NEGOTIATE_MS = 8_000
const MB = 1e6

// ---- small helpers --------------------------------------------------------------------------

const epochUs = () => (performance.timeOrigin + performance.now()) * 1000

// Busy time of the whole host (all CPUs, all processes) in ms, from /proc/stat (USER_HZ 100).
function hostBusyMs() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const [user, nice, system, , , irq = 0, softirq = 0, steal = 0] = f
    return (user + nice + system + irq + softirq + steal) * 10
  } catch {
    return NaN
  }
}

// Context switches of all threads of this process (voluntary + involuntary; threads that ended
// in between are not counted).
function ctxSwitches() {
  let n = 0
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const st = readFileSync(`/proc/self/task/${tid}/status`, 'utf8')
      for (const m of st.matchAll(/ctxt_switches:\s*(\d+)/g)) n += Number(m[1])
    }
  } catch {
    return NaN
  }
  return n
}

// CPU of this process and of the rest of the host over a window, in % of one core.
function cpuWindow() {
  const x0 = ctxSwitches()
  const c0 = process.cpuUsage()
  const t0 = now()
  const h0 = hostBusyMs()
  const e0 = performance.eventLoopUtilization()
  return () => {
    const d = process.cpuUsage(c0)
    const wallMs = now() - t0
    const ownMs = (d.user + d.system) / 1000
    const hostMs = hostBusyMs() - h0
    const elu = performance.eventLoopUtilization(e0)
    return {
      wallMs,
      cpuMs: ownMs,
      cpuPct: (100 * ownMs) / wallMs,
      otherPct: Math.max(0, (100 * (hostMs - ownMs)) / wallMs),
      jsActiveMs: elu.active,
      ctx: ctxSwitches() - x0,
    }
  }
}

// Runs fn(i) for i < count, starting frame i at t0 + i * intervalMs (never earlier; a frame that
// is due is sent at once, so a slow frame delays the next ones without dropping any).
async function paced(count, intervalMs, fn, limitMs) {
  const t0 = now()
  let late = 0
  for (let i = 0; i < count; i++) {
    const wait = t0 + i * intervalMs - now()
    if (wait > 1) await sleep(wait)
    else if (intervalMs > 0 && wait < -intervalMs / 2) late++
    if (now() - t0 > limitMs) throw new Error(`paced loop over its time limit of ${limitMs} ms at frame ${i}`)
    await fn(i)
  }
  return { late, elapsedMs: now() - t0 }
}

async function until(fn, ms, label, every = 10) {
  const t0 = now()
  for (;;) {
    if (await fn()) return
    if (now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${label}`)
    await sleep(every)
  }
}

const msStats = (values) => {
  const s = stats(values)
  return { n: s.n, p50: s.p50, p95: s.p95, min: s.min, max: s.max, mean: s.mean }
}

// ---- test signals ---------------------------------------------------------------------------

// 50 frames of a 440 Hz tone at 0.5 (one second, whole cycles: it loops without a seam).
function toneFrames() {
  return Array.from({ length: 50 }, (_, f) => {
    const a = new Float32Array(FRAME)
    for (let i = 0; i < FRAME; i++) a[i] = 0.5 * Math.sin((2 * Math.PI * 440 * (f * FRAME + i)) / RATE)
    return a
  })
}

const CLICK_AT = 100 // first sample of the burst inside its frame
const CLICK_LEN = 96 // 2 ms
const CLICK_THRESHOLD = 0.2
function clickFrame() {
  const a = new Float32Array(FRAME)
  for (let i = 0; i < CLICK_LEN; i++) a[CLICK_AT + i] = 0.8 * Math.sin((2 * Math.PI * 3000 * i) / RATE)
  return a
}

// Packed I420 test pattern: a diagonal luma ramp that scrolls 8 levels per frame (so frame 32
// equals frame 0), a box moving right, a colour ramp; the top band is flat grey and carries the
// frame number (written by stampFrame).
const Y_SIZE = W * H
const C_W = W / 2
const C_H = H / 2
const BAND_H = 48
const BLOCK = 48
const BITS = 16
function patternFrames() {
  return Array.from({ length: PATTERN_FRAMES }, (_, i) => {
    const buf = Buffer.alloc(Y_SIZE + 2 * C_W * C_H)
    const bx = i * 34
    const by = 300
    for (let y = 0; y < H; y++) {
      const row = y * W
      for (let x = 0; x < W; x++) {
        let v
        if (y < BAND_H) v = 128
        else if (x >= bx && x < bx + 192 && y >= by && y < by + 192) {
          v = x >= bx + 48 && x < bx + 144 && y >= by + 48 && y < by + 144 ? 16 : 235
        } else v = (x + 2 * y + 8 * i) & 255
        buf[row + x] = v
      }
    }
    const u = Y_SIZE
    const v = Y_SIZE + C_W * C_H
    for (let y = 0; y < C_H; y++) {
      for (let x = 0; x < C_W; x++) {
        const band = y < BAND_H / 2
        buf[u + y * C_W + x] = band ? 128 : (x + 4 * i) & 255
        buf[v + y * C_W + x] = band ? 128 : 64 + ((y * 2) & 127)
      }
    }
    return buf
  })
}

// The frame number as 16 luma blocks (32x32, 16 = 0, 235 = 1) in the grey band; bit 15 is always
// 1 and bit 14 always 0, so a picture without a readable number is recognised.
function stampFrame(buf, n) {
  const code = 0x8000 | (n & 0x3fff)
  for (let b = 0; b < BITS; b++) {
    const val = (code >> b) & 1 ? 235 : 16
    const x0 = b * BLOCK + 8
    for (let y = 8; y < 40; y++) buf.fill(val, y * W + x0, y * W + x0 + 32)
  }
}

function readStamp(data, width) {
  if (width !== W || data.length < Y_SIZE) return -1
  let code = 0
  for (let b = 0; b < BITS; b++) {
    const x0 = b * BLOCK + 8
    let sum = 0
    for (let y = 16; y < 32; y += 2) for (let x = x0 + 8; x < x0 + 24; x += 2) sum += data[y * W + x]
    if (sum / 64 > 128) code |= 1 << b
  }
  return (code & 0xc000) === 0x8000 ? code & 0x3fff : -1
}

// ---- one-process pair -----------------------------------------------------------------------

async function openPair(rm, url, options) {
  const pair = await rmOpenPair(rm, { url }, options)
  pair.aId = pair.a.peerId
  pair.bId = pair.b.peerId
  await until(() => pair.b.listPeers().includes(pair.aId), 5_000, 'b lists a')
  pair.remote = pair.b.getPeer(pair.aId) // b's view of a: where a's media arrives
  return pair
}

// Adds an audio track a → b and waits until a frame sent by a arrives at b.
async function startAudio(pair, options = { channels: 1, bitrate: 64_000 }) {
  await pair.peer.addAudioTrack(options)
  const silence = new Float32Array(FRAME)
  await until(() => pair.a.sendAudio(pair.bId, silence).then(() => true, () => false), NEGOTIATE_MS, 'audio track negotiated')
  const first = new Promise((r) => pair.remote.once('audio-frame', r))
  await until(async () => {
    await pair.a.sendAudio(pair.bId, silence)
    return Promise.race([first.then(() => true), sleep(20).then(() => false)])
  }, NEGOTIATE_MS, 'first audio frame at b', 0)
}

// Adds a 720p video track a → b and waits until a frame sent by a arrives at b.
async function startVideo(pair, frames) {
  await pair.peer.addVideoTrack({ width: W, height: H, framerate: FPS, bitrate: VIDEO_BITRATE })
  const f = { data: frames[0], width: W, height: H, format: 'i420', timestampUs: Math.round(now() * 1000), keyframe: true }
  await until(() => pair.a.sendVideo(pair.bId, f).then(() => true, () => false), NEGOTIATE_MS, 'video track negotiated')
  const first = new Promise((r) => pair.remote.once('video-frame', r))
  await withTimeout(first, NEGOTIATE_MS, 'first video frame at b')
}

// ---- child: audio ---------------------------------------------------------------------------

async function audioChild(url) {
  const rm = loadRemotemedia()
  const pair = await openPair(rm, url, {})
  try {
    await startAudio(pair)
    const tone = toneFrames()
    const { a, bId, remote } = pair
    const out = { errors: pair.errors }

    // Receive side for every phase: count frames, and handler time − wallClockUs.
    let received = 0
    const delays = { 0.5: [], 1: [], other: [] }
    let onFrame = null
    remote.on('audio-frame', (f) => {
      received++
      const d = (epochUs() - f.wallClockUs) / 1000
      ;(delays[f.syncConfidence] ?? delays.other).push(d)
      onFrame?.(f)
    })

    // Warm-up, paced like real audio (an unpaced burst moves the RTP clock seconds ahead of the
    // wall clock, which would distort the wallClockUs delays of the paced run).
    await paced(50, 20, (i) => a.sendAudio(bId, tone[i % 50]), 10_000)

    const timeFrames = async (count, pace) => {
      const sync = []
      const whole = []
      const send = async (i) => {
        const t0 = now()
        const p = a.sendAudio(bId, tone[i % 50])
        const t1 = now()
        await p
        const t2 = now()
        sync.push(t1 - t0)
        whole.push(t2 - t0)
      }
      received = 0
      for (const k in delays) delays[k].length = 0
      const cpu = cpuWindow()
      const run = pace
        ? await paced(count, 20, send, count * 20 + 10_000)
        : await paced(count, 0, send, 60_000)
      await sleep(200)
      const c = cpu()
      return {
        frames: count, sync: msStats(sync), whole: msStats(whole), late: run.late, received,
        cpuPct: c.cpuPct, otherPct: c.otherPct,
        delay: Object.fromEntries(Object.entries(delays).filter(([, v]) => v.length).map(([k, v]) => [k, msStats(v)])),
      }
    }
    out.paced = await timeFrames(AUDIO_PACED, true)
    out.unpaced = await timeFrames(AUDIO_UNPACED, false)

    // Clicks: every 5th frame holds a 2 ms burst, the others are silence.
    const silence = new Float32Array(FRAME)
    const click = clickFrame()
    const latencies = []
    const offsets = []
    let pending = null // { t } of the click sent and not yet detected
    let lastDetect = -Infinity
    let spurious = 0
    let missed = 0
    onFrame = (f) => {
      let at = -1 // first sample over the threshold
      for (let i = 0; i < f.samples.length; i++) {
        if (Math.abs(f.samples[i]) > CLICK_THRESHOLD) { at = i; break }
      }
      if (at < 0) return
      const t = now()
      if (pending) {
        latencies.push(t - pending.t)
        offsets.push(at - CLICK_AT)
        pending = null
        lastDetect = t
      } else if (t - lastDetect > 30) spurious++ // a burst's tail in the next frame is not spurious
    }
    await paced(CLICKS * 5, 20, async (i) => {
      if (i % 5 === 0) {
        if (pending) missed++
        pending = { t: now() }
        await a.sendAudio(bId, click)
      } else {
        await a.sendAudio(bId, silence)
      }
    }, CLICKS * 100 + 10_000)
    await sleep(200)
    if (pending) missed++
    onFrame = null
    out.clicks = { sent: CLICKS, detected: latencies.length, missed, spurious, latency: msStats(latencies), sampleShift: msStats(offsets) }
    out.udpDrops = udpRcvbufErrors()
    return out
  } finally {
    await pair.close()
  }
}

// ---- child: video ---------------------------------------------------------------------------

async function videoChild(codec, url) {
  const rm = loadRemotemedia()
  const frames = patternFrames()
  const pair = await openPair(rm, url, { videoCodec: codec })
  try {
    await startVideo(pair, frames)
    const { a, bId, remote } = pair
    const out = { codec, errors: pair.errors }
    const sentAt = new Map() // frame number → performance.now() at the sendVideo() call
    const rx = { frames: 0, keyframes: 0, unreadable: 0, e2e: [], keyNumbers: new Set(), delays: { 0.5: [], 1: [], other: [] } }
    let sink = 0
    const listener = (f) => {
      rx.frames++
      const t = now()
      const n = readStamp(f.data, f.width)
      sink ^= f.data[0]
      if (n < 0) { rx.unreadable++; return }
      if (f.keyframe) { rx.keyframes++; rx.keyNumbers.add(n) }
      const s = sentAt.get(n)
      if (s !== undefined) rx.e2e.push(t - s)
      const d = (epochUs() - f.wallClockUs) / 1000
      ;(rx.delays[f.syncConfidence] ?? rx.delays.other).push(d)
      if (n === firstMeasured) rx.afterPause = d
      if (n === firstMeasured + 1) rx.afterPause2 = d
    }
    remote.on('video-frame', listener)

    let seq = 1
    let firstMeasured = -1
    const sendTimes = new Map() // frame number → ms from call to resolve
    const send = async () => {
      const n = seq++
      const buf = frames[n % PATTERN_FRAMES]
      stampFrame(buf, n)
      const t0 = now()
      sentAt.set(n, t0)
      await a.sendVideo(bId, { data: buf, width: W, height: H, format: 'i420', timestampUs: Math.round(t0 * 1000) })
      sendTimes.set(n, now() - t0)
    }
    // Warm-up: the first second (keyframe, rate control settling).
    await paced(VIDEO_WARMUP, 1000 / FPS, send, VIDEO_WARMUP * 100 + 10_000)
    await sleep(300)
    firstMeasured = seq
    rx.frames = 0; rx.keyframes = 0; rx.unreadable = 0; rx.e2e.length = 0; rx.keyNumbers.clear()
    for (const k in rx.delays) rx.delays[k].length = 0
    const udp0 = udpRcvbufErrors()
    let cpu = cpuWindow()
    const run = await paced(VIDEO_FRAMES, 1000 / FPS, send, VIDEO_FRAMES * 100 + 10_000)
    const inWindow = rx.frames
    const c = cpu()
    await sleep(300)
    const all = []
    const delta = []
    const key = []
    for (let n = firstMeasured; n < seq; n++) {
      const t = sendTimes.get(n)
      all.push(t)
      ;(rx.keyNumbers.has(n) ? key : delta).push(t)
    }
    out.listener = {
      sent: VIDEO_FRAMES, late: run.late, received: rx.frames, receivedInWindow: inWindow,
      keyframes: rx.keyframes, unreadable: rx.unreadable,
      send: msStats(all), sendDelta: msStats(delta), sendKey: msStats(key),
      e2e: msStats(rx.e2e), afterPause: rx.afterPause, afterPause2: rx.afterPause2,
      delay: Object.fromEntries(Object.entries(rx.delays).filter(([, v]) => v.length).map(([k, v]) => [k, msStats(v)])),
      wallMs: c.wallMs, cpuPct: c.cpuPct, otherPct: c.otherPct, jsActivePct: (100 * c.jsActiveMs) / c.wallMs,
      udpDrops: udpRcvbufErrors() - udp0,
    }

    // The same stream without any 'video-frame' listener.
    remote.off('video-frame', listener)
    cpu = cpuWindow()
    const run2 = await paced(NO_LISTENER_FRAMES, 1000 / FPS, send, NO_LISTENER_FRAMES * 100 + 10_000)
    const c2 = cpu()
    out.noListener = { sent: NO_LISTENER_FRAMES, late: run2.late, wallMs: c2.wallMs, cpuPct: c2.cpuPct, otherPct: c2.otherPct, jsActivePct: (100 * c2.jsActiveMs) / c2.wallMs }
    return out
  } finally {
    await pair.close()
  }
}

// ---- child: memory --------------------------------------------------------------------------

function rssNow() {
  globalThis.gc?.()
  globalThis.gc?.()
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, ...procCounts() }
}

async function memoryChild(codec, url, pairs) {
  const rm = loadRemotemedia()
  const frames = patternFrames() // allocated before the baseline: not counted per peer
  const tone = toneFrames()
  const stream = async (list, ms) => {
    const loops = []
    for (const p of list) {
      const limit = ms + 10_000
      loops.push(paced(Math.round(ms / 20), 20, (i) => p.a.sendAudio(p.bId, tone[i % 50]), limit))
      loops.push(paced(Math.round((ms * FPS) / 1000), 1000 / FPS, (i) => p.a.sendVideo(p.bId, {
        data: frames[i % PATTERN_FRAMES], width: W, height: H, format: 'i420', timestampUs: Math.round(now() * 1000),
      }), limit))
    }
    await Promise.all(loops)
  }
  const setUp = async () => {
    const p = await openPair(rm, url, { videoCodec: codec })
    await startAudio(p)
    await startVideo(p, frames)
    p.rxAudio = 0
    p.rxVideo = 0
    p.remote.on('audio-frame', () => p.rxAudio++)
    p.remote.on('video-frame', () => p.rxVideo++)
    return p
  }
  // Warm-up: one pair streams for a second and closes (codec libraries, thread pools).
  const warm = await setUp()
  await stream([warm], 1000)
  await warm.close()
  await sleep(1000)
  const base = rssNow()

  const list = []
  try {
    for (let i = 0; i < pairs; i++) list.push(await setUp())
    await sleep(1500)
    const idle = rssNow()
    for (const p of list) { p.rxAudio = 0; p.rxVideo = 0 }
    let peak = 0
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 250)
    const cpu = cpuWindow()
    const STREAM_MS = 8000
    await stream(list, STREAM_MS)
    const c = cpu()
    clearInterval(sampler)
    const streaming = rssNow()
    peak = Math.max(peak, streaming.rss)
    const rx = list.map((p) => ({ audio: p.rxAudio, video: p.rxVideo }))
    const errors = list.flatMap((p) => p.errors)
    for (const p of list) await p.close()
    list.length = 0
    await sleep(1500)
    const closed = rssNow()
    return {
      codec, pairs, base, idle, streaming, peak, closed, rx, errors,
      sent: { audio: Math.round(STREAM_MS / 20), video: Math.round((STREAM_MS * FPS) / 1000) },
      cpuPct: c.cpuPct, otherPct: c.otherPct,
    }
  } finally {
    for (const p of list) await p.close()
  }
}

// ---- children: split (tx and rx in two processes) -------------------------------------------

function ipcLoop(handlers) {
  process.on('disconnect', () => process.exit(0))
  process.on('message', async (msg) => {
    try {
      const r = await handlers[msg.cmd](msg)
      process.send({ id: msg.id, ok: r })
    } catch (e) {
      process.send({ id: msg.id, error: e && e.message ? e.message : String(e) })
    }
  })
}

async function splitRx(url) {
  processDeadline(180_000, 'split-rx')
  const rm = loadRemotemedia()
  const t = new rm.WebRtcTransport({ signalingUrl: url, peerId: `media-rx-${process.pid}`, bindAddress: '127.0.0.1' })
  const errors = []
  t.on('error', (e) => errors.push(`${e.code} ${e.message}`))
  await t.start()
  let count = 0
  let sink = 0
  const touch = (f) => { count++; sink += (f.data ?? f.samples)[0] }
  const gc = { n: 0, ms: 0 }
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { gc.n++; gc.ms += e.duration }
  }).observe({ entryTypes: ['gc'] })
  ipcLoop({
    async measure({ ms, kind, listen }) {
      const ev = kind === 'video' ? 'video-frame' : 'audio-frame'
      if (listen) t.on(ev, touch)
      count = 0
      const g0 = { ...gc }
      const c0 = cpuWindow()
      await sleep(ms)
      const c = c0()
      await sleep(50) // let the observer report GCs of the window
      if (listen) t.off(ev, touch)
      return { ...c, frames: listen ? count : null, gcCount: gc.n - g0.n, gcMs: gc.ms - g0.ms, errors, sink: Number.isFinite(sink) }
    },
    async exit() { await t.shutdown(); setImmediate(() => process.exit(0)); return true },
  })
  process.send({ ready: t.peerId })
}

async function splitTx(url, rxId, codec) {
  processDeadline(180_000, 'split-tx')
  const rm = loadRemotemedia()
  const t = new rm.WebRtcTransport({ signalingUrl: url, peerId: `media-tx-${process.pid}`, bindAddress: '127.0.0.1', videoCodec: codec })
  const errors = []
  t.on('error', (e) => errors.push(`${e.code} ${e.message}`))
  await t.start()
  const peer = await withTimeout(t.connectPeer(rxId), 5_000, 'connectPeer rx')
  const frames = patternFrames()
  const tone = toneFrames()
  await peer.addAudioTrack({ channels: 1, bitrate: 64_000 })
  await until(() => t.sendAudio(rxId, tone[0]).then(() => true, () => false), NEGOTIATE_MS, 'audio negotiated')
  await peer.addVideoTrack({ width: W, height: H, framerate: FPS, bitrate: VIDEO_BITRATE })
  const vf = (i, keyframe = false) => ({ data: frames[i % PATTERN_FRAMES], width: W, height: H, format: 'i420', timestampUs: Math.round(now() * 1000), keyframe })
  await until(() => t.sendVideo(rxId, vf(0, true)).then(() => true, () => false), NEGOTIATE_MS, 'video negotiated')
  let vi = 1
  ipcLoop({
    async stream({ kind, ms }) {
      const c0 = cpuWindow()
      let n = 0
      if (kind === 'audio') await paced(Math.round(ms / 20), 20, (i) => { n++; return t.sendAudio(rxId, tone[i % 50]) }, ms + 10_000)
      else await paced(Math.round((ms * FPS) / 1000), 1000 / FPS, () => { n++; return t.sendVideo(rxId, vf(vi++)) }, ms + 10_000)
      return { ...c0(), sent: n, errors }
    },
    async exit() { await t.shutdown(); setImmediate(() => process.exit(0)); return true },
  })
  process.send({ ready: t.peerId })
}

// Parent side of a split child: fork, wait for { ready }, then call(cmd, args) → result.
function forkChild(args, timeoutMs) {
  const child = fork(SCRIPT, ['--child', ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let next = 0
  const waiting = new Map()
  let readyResolve
  let readyReject
  const ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej })
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  child.on('message', (m) => {
    if (m.ready) return readyResolve(m.ready)
    const w = waiting.get(m.id)
    waiting.delete(m.id)
    if (m.error) w?.reject(new Error(m.error))
    else w?.resolve(m.ok)
  })
  child.on('exit', (code, signal) => {
    clearTimeout(killer)
    const e = new Error(`child ${args[0]} ended with ${signal ?? `exit code ${code}`}`)
    readyReject(e)
    for (const w of waiting.values()) w.reject(e)
    waiting.clear()
  })
  return {
    ready: withTimeout(ready, 30_000, `${args[0]} ready`),
    call(cmd, msg = {}, ms = 60_000) {
      const id = ++next
      const p = new Promise((resolve, reject) => waiting.set(id, { resolve, reject }))
      child.send({ ...msg, cmd, id })
      return withTimeout(p, ms, `${args[0]} ${cmd}`)
    },
    kill() { clearTimeout(killer); if (child.exitCode === null) child.kill('SIGKILL') },
  }
}

// Receiver and sender in two processes: an idle window, then per stream kind one window with a
// listener and one without, while the sender streams.
const SPLIT_MS = 5000
const SPLIT_WARMUP_MS = 3000
async function runSplit(url, codec, kinds) {
  const rx = forkChild(['split-rx', url], 150_000)
  let tx
  try {
    const rxId = await rx.ready
    tx = forkChild(['split-tx', url, rxId, codec], 150_000)
    await tx.ready
    await sleep(500)
    const out = { idle: await rx.call('measure', { ms: 3000, kind: 'audio', listen: false }) }
    for (const kind of kinds) {
      const streaming = tx.call('stream', { kind, ms: 2 * SPLIT_MS + SPLIT_WARMUP_MS + 1000 }, 60_000)
      await sleep(SPLIT_WARMUP_MS) // the first seconds of a stream cost more on the JS thread (JIT, first GCs)
      const none = await rx.call('measure', { ms: SPLIT_MS, kind, listen: false })
      const listen = await rx.call('measure', { ms: SPLIT_MS, kind, listen: true })
      const sender = await streaming
      out[kind] = { listen, none, sender, rate: kind === 'audio' ? 50 : FPS }
      await sleep(500)
    }
    await Promise.allSettled([tx.call('exit', {}, 10_000), rx.call('exit', {}, 10_000)])
    return out
  } catch (e) {
    return { error: e.message }
  } finally {
    await sleep(200)
    tx?.kill()
    rx.kill()
  }
}

// ---- codec reference (cargo bench) ----------------------------------------------------------

function runCodecBench() {
  return new Promise((resolve) => {
    execFile('cargo', ['bench', '-p', 'remotemedia-webrtc', '--bench', 'codec', '--', 'opus_encode_20ms_1ch$'], {
      cwd: ROOT_DIR, timeout: 900_000, maxBuffer: 16 * MB,
    }, (err, stdout, stderr) => {
      if (err && !stdout) return resolve({ error: `cargo bench failed: ${String(stderr || err.message).trim().split('\n').slice(-3).join(' / ')}` })
      const lines = {}
      for (const m of stdout.matchAll(/^(.*?)\s+p50\s+([\d.]+)(ns|µs|us|ms|s)\s+p95\s+([\d.]+)(ns|µs|us|ms|s)\s*$/gm)) {
        const toMs = (v, u) => Number(v) * { ns: 1e-6, µs: 1e-3, us: 1e-3, ms: 1, s: 1000 }[u]
        lines[m[1].trim()] = { p50: toMs(m[2], m[3]), p95: toMs(m[4], m[5]) }
      }
      const crit = /opus_encode_20ms_1ch\s+time:\s+\[([\d.]+) (ns|µs|us|ms) ([\d.]+) (ns|µs|us|ms) ([\d.]+) (ns|µs|us|ms)\]/.exec(stdout)
      if (crit) lines['criterion opus_encode_20ms_1ch (mean estimate)'] = { p50: Number(crit[3]) * { ns: 1e-6, µs: 1e-3, us: 1e-3, ms: 1 }[crit[4]] }
      resolve({ lines })
    })
  })
}

// ---- parent ---------------------------------------------------------------------------------

const f3 = (x) => fmt(x, 3)
const f2 = (x) => fmt(x, 2)

async function main() {
  const stopDeadline = processDeadline(1_500_000, 'media.mjs')
  const rm = loadRemotemedia()
  const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const load0 = os.loadavg()
  const notes = []
  const log = (s) => process.stderr.write(`[media] ${s}\n`)
  const child = async (label, args, opts) => {
    log(`${label} ...`)
    const t0 = now()
    const r = await runJsonChild(SCRIPT, ['--child', ...args], opts)
    log(`${label}: ${r.error ? `error: ${r.error}` : 'done'} (${fmt((now() - t0) / 1000)} s)`)
    return r
  }

  let codec = null
  if (RUN_CODEC) {
    log('cargo bench -p remotemedia-webrtc --bench codec -- opus_encode_20ms_1ch$ ...')
    codec = await runCodecBench()
    log(codec.error ? `codec: ${codec.error}` : 'codec: done')
  }
  const audio = ONLY.has('audio') ? await child('audio', ['audio', server.url], { timeoutMs: 180_000 }) : skipped
  const video = { vp8: skipped, vp9: skipped }
  if (ONLY.has('video')) for (const c of ['vp8', 'vp9']) video[c] = await child(`video ${c}`, ['video', c, server.url], { timeoutMs: 180_000 })
  const split = { vp8: skipped, vp9: skipped }
  if (ONLY.has('split')) for (const [c, kinds] of [['vp8', ['audio', 'video']], ['vp9', ['video']]]) {
    log(`split ${c} (tx and rx processes) ...`)
    split[c] = await runSplit(server.url, c, kinds)
    log(`split ${c}: ${split[c].error ? `error: ${split[c].error}` : 'done'}`)
  }
  const memory = { vp8: skipped, vp9: skipped, vp8mmap: skipped }
  const memArgs = (c) => ['memory', c, server.url, String(MEM_PAIRS)]
  if (ONLY.has('memory')) for (const c of ['vp8', 'vp9']) memory[c] = await child(`memory ${c}`, memArgs(c), { nodeArgs: ['--expose-gc'], timeoutMs: 180_000 })
  // The same VP8 run with glibc's mmap threshold fixed (no dynamic raise): shows how much of the
  // RSS is freed memory the allocator keeps.
  const hadThreshold = process.env.MALLOC_MMAP_THRESHOLD_
  process.env.MALLOC_MMAP_THRESHOLD_ = '131072'
  if (ONLY.has('memory')) memory.vp8mmap = await child('memory vp8, MALLOC_MMAP_THRESHOLD_=131072', memArgs('vp8'), { nodeArgs: ['--expose-gc'], timeoutMs: 180_000 })
  if (hadThreshold === undefined) delete process.env.MALLOC_MMAP_THRESHOLD_
  else process.env.MALLOC_MMAP_THRESHOLD_ = hadThreshold
  const leftAtServer = server.peerIds.length
  await server.close()
  const load1 = os.loadavg()

  const raw = codec?.lines ?? {}
  const rawOpus = raw['opus encode 20 ms, 1 ch, 64 kb/s, cx 10']
  const rawOpusDec = raw['opus decode 20 ms, 1 ch']
  const rawEnc = { vp8: raw['Vp8 720p encode (2 Mb/s, default tuning)'], vp9: raw['Vp9 720p encode (2 Mb/s, default tuning)'] }
  const rawDec = { vp8: raw['Vp8 720p decode'], vp9: raw['Vp9 720p decode'] }
  if (codec?.error) notes.push(`raw codec reference: ${codec.error}`)

  console.log(`\n## Media benchmarks, loopback — ${machineInfo()}\n`)
  console.log(`Load average before / after: ${load0.map((x) => x.toFixed(2)).join(' ')} / ${load1.map((x) => x.toFixed(2)).join(' ')}. "other CPU" = busy time of every other process on the host during the window (/proc/stat), % of one core; it should be ~0 for the numbers to mean anything.`)
  if (RUN_CODEC) console.log('Raw codec numbers: `cargo bench -p remotemedia-webrtc --bench codec` (its own p50/p95 lines; Rust, in-process, its own 440 Hz tone and test pattern).')

  // 1. audio send path
  console.log('\n### 1. Audio send path: Opus 20 ms (960 samples mono Float32Array, 440 Hz tone), 64 kb/s, complexity 10 (ms)\n')
  const arows = []
  const over = (x) => (rawOpus ? `+${fmt((100 * (x - rawOpus.p50)) / rawOpus.p50, 0)} %` : '—')
  if (rawOpus) arows.push(['raw libopus encode (cargo bench)', '2000', '—', f3(rawOpus.p50), f3(rawOpus.p95), '—', '—', 'reference'])
  else arows.push(['raw libopus encode', '—', '—', '—', '—', '—', '—', RUN_CODEC ? 'cargo bench failed' : 'run with BENCH_CODEC=1'])
  if (audio.error) arows.push(['sendAudio', '—', '—', '—', '—', '—', '—', `**${audio.error}**`])
  else {
    for (const [name, r] of [['unpaced', audio.unpaced], ['paced 20 ms', audio.paced]]) {
      arows.push([`sendAudio sync part, ${name}: call → promise returned (JS checks, napi, track lookup, encode)`, String(r.sync.n), String(r.late), f3(r.sync.p50), f3(r.sync.p95), f3(r.sync.min), f3(r.sync.max), over(r.sync.p50)])
      arows.push([`sendAudio whole, ${name}: call → promise resolved (+ RTP, SRTP, UDP write, wake-up of the JS thread)`, String(r.whole.n), String(r.late), f3(r.whole.p50), f3(r.whole.p95), f3(r.whole.min), f3(r.whole.max), over(r.whole.p50)])
    }
  }
  const sa = split.vp8?.audio
  if (sa) {
    const txUs = (1000 * sa.sender.cpuMs) / sa.sender.sent
    arows.push(['CPU per frame of the sending process, all threads (split run, paced 20 ms)', String(sa.sender.sent), '—', fmt(txUs / 1000, 3), '—', '—', '—', `${over(txUs / 1000)}; ${fmt(sa.sender.ctx / sa.sender.sent, 1)} context switches / frame`])
  }
  console.log(markdownTable(['what is measured', 'frames', 'late', 'p50', 'p95', 'min', 'max', 'over raw encode p50 (goal ≤ +20 %)'], arows))
  console.log('\nUnpaced: the next sendAudio() right after the previous promise resolved. Paced: one call every 20 ms (setTimeout), the JS thread idles in between. "late" = frames sent more than 10 ms after their slot.')
  if (!audio.error) console.log(`Frames received at b: paced ${audio.paced.received}/${audio.paced.frames}, unpaced ${audio.unpaced.received}/${audio.unpaced.frames}. Process CPU during the paced run (send + receive of one Opus stream, both transports in one process): ${fmt(audio.paced.cpuPct)} % of one core (other processes ${fmt(audio.paced.otherPct)} %).`)

  // 2. video send
  console.log(`\n### 2. 1280x720 I420 send: sendVideo() call → promise resolved (encode on a blocking thread + packetize + write), ${VIDEO_FRAMES} frames paced at ${FPS} fps after ${VIDEO_WARMUP} warm-up frames, 2 Mb/s, keyframe every 60 frames (ms)\n`)
  const vrows = []
  for (const c of ['vp8', 'vp9']) {
    const r = video[c]
    const lim = c === 'vp8' ? 10 : 15
    if (r.error) { vrows.push([c.toUpperCase(), '—', '—', '—', '—', '—', '—', '—', `< ${lim}`, `**${r.error}**`]); continue }
    const L = r.listener
    vrows.push([c.toUpperCase(), String(L.send.n), f2(L.send.p50), f2(L.send.p95), f2(L.send.max),
      `${f2(L.sendDelta.p50)} / ${f2(L.sendDelta.p95)}`, `${L.sendKey.n}: ${f2(L.sendKey.p50)} / ${f2(L.sendKey.max)}`,
      rawEnc[c] ? `${f2(rawEnc[c].p50)} / ${f2(rawEnc[c].p95)}` : '—', `< ${lim}`,
      L.send.p50 < lim && L.send.p95 < lim ? 'yes' : (L.send.p50 < lim ? 'p50 yes, p95 no' : 'no')])
  }
  console.log(markdownTable(['codec', 'frames', 'p50', 'p95', 'max', 'delta frames p50 / p95', 'keyframes n: p50 / max', 'raw encode p50 / p95', 'goal (p50, p95)', 'met?'], vrows))
  console.log('\nKeyframes are the frames the receiver flagged as keyframes (matched by the frame number in the picture). The raw encode uses the codec bench\'s own test pattern, not this one.')

  // 3. CPU
  console.log(`\n### 3. CPU of 720p30 send + receive, one direction (a → b), both transports in one process (% of one core, process.cpuUsage over the ${VIDEO_FRAMES}-frame window)\n`)
  const crows = []
  for (const c of ['vp8', 'vp9']) {
    const r = video[c]
    if (r.error) { crows.push([c.toUpperCase(), '—', '—', '—', '—', '—', '—', '—', '< 30', `**${r.error}**`]); continue }
    const L = r.listener
    const sv = split[c]?.video
    crows.push([c.toUpperCase(), fmt(L.wallMs / 1000), `${L.sent} / ${L.receivedInWindow} (${L.received} after a 300 ms drain)`, `${L.keyframes}`,
      fmt(L.cpuPct), fmt(L.otherPct), sv ? `${fmt(sv.sender.cpuPct)} / ${fmt(sv.listen.cpuPct)}` : '—', `${f2(L.e2e.p50)} / ${f2(L.e2e.p95)}`, '< 30', L.cpuPct < 30 ? 'yes' : 'no'])
  }
  console.log(markdownTable(['codec', 'window s', 'frames sent / received in window', 'keyframes received', 'CPU % (send + receive)', 'other CPU %', 'split run: tx / rx process CPU %', 'sendVideo() → \'video-frame\' handler p50 / p95 ms', 'goal %', 'met?'], crows))
  console.log('\nThe end-to-end column: from the sendVideo() call to the receiver\'s handler for the same frame (frame number read back from the picture): encode, packetize, SRTP, UDP, reassembly, decode, handoff to JS.')

  // 4. crossing into JS
  console.log('\n### 4. Handing frames to JS\n')
  console.log(`Receiver alone in its own process (the tx process streams to it; windows of ${SPLIT_MS / 1000} s). JS-thread time = event-loop active time (performance.eventLoopUtilization) minus the rate of the same connected pair idle, per frame: the napi conversion of the event batch, the Buffer / Float32Array handoff (no copy: external buffers), the library's JS dispatch, the GC of those objects and, in the listener column, a listener that reads data[0]. "no listener" frames are taken from the send rate (the listener window counts them).\n`)
  const jrows = []
  for (const [c, kind] of [['vp8', 'audio'], ['vp8', 'video'], ['vp9', 'video']]) {
    const sp = split[c]
    const name = kind === 'audio' ? 'audio 20 ms Opus → Float32Array(960)' : `video ${c.toUpperCase()} 720p → Buffer (1.38 MB I420)`
    if (!sp || sp.error) { jrows.push([name, '—', '—', '—', '—', '—', '—', '—', `**${sp?.error ?? 'not run'}**`]); continue }
    const s = sp[kind]
    const jsIdle = sp.idle.jsActiveMs / sp.idle.wallMs
    const cpuIdle = sp.idle.cpuMs / sp.idle.wallMs
    const fL = s.listen.frames
    const fN = Math.round((s.rate * s.none.wallMs) / 1000)
    const js = (m, n) => (1000 * (m.jsActiveMs - jsIdle * m.wallMs)) / n
    const cpu = (m, n) => (1000 * (m.cpuMs - cpuIdle * m.wallMs)) / n
    const rawD = kind === 'audio' ? rawOpusDec : rawDec[c]
    jrows.push([name, `${fL} in ${fmt(s.listen.wallMs / 1000)} s`, fmt(js(s.none, fN), 0), fmt(js(s.listen, fL), 0),
      `${fmt((1000 * s.none.gcMs) / fN, 0)} / ${fmt((1000 * s.listen.gcMs) / fL, 0)} (${s.none.gcCount + s.listen.gcCount} GCs)`,
      `${fmt(cpu(s.listen, fL), 0)} (raw decode p50 ${rawD ? fmt(rawD.p50 * 1000, 0) : '—'})`,
      `${fmt((1000 * s.sender.cpuMs) / s.sender.sent, 0)}`,
      `${fmt(s.listen.ctx / fL, 1)} / ${fmt(s.sender.ctx / s.sender.sent, 1)}`, `${fmt(Math.max(0, s.listen.otherPct - s.sender.cpuPct))}`])
  }
  console.log(markdownTable(['stream', 'frames counted', 'JS thread µs / frame, no listener', 'JS thread µs / frame, listener', 'of which GC µs / frame, no listener / listener', 'rx process CPU µs / frame', 'tx process CPU µs / frame', 'context switches / frame rx / tx', 'other CPU % (besides tx)'], jrows))
  for (const c of ['vp8', 'vp9']) {
    if (split[c]?.idle) notes.push(`split ${c}: idle rx (connected, no media): JS thread ${fmt((100 * split[c].idle.jsActiveMs) / split[c].idle.wallMs, 2)} %, CPU ${fmt(split[c].idle.cpuPct, 2)} % of one core.`)
  }
  const drows = []
  if (!audio.error) for (const [k, v] of Object.entries(audio.paced.delay)) drows.push(['audio (paced run)', `syncConfidence ${k}`, String(v.n), f2(v.p50), f2(v.p95), f2(v.min), f2(v.max)])
  for (const c of ['vp8', 'vp9']) {
    const r = video[c]
    if (r.error) continue
    for (const [k, v] of Object.entries(r.listener.delay)) drows.push([`video ${c.toUpperCase()}`, `syncConfidence ${k}`, String(v.n), f2(v.p50), f2(v.p95), f2(v.min), f2(v.max)])
    notes.push(`video ${c}: handler − wallClockUs of the first frame after the 300 ms pause between warm-up and measurement: ${f2(r.listener.afterPause)} ms, of the one after it: ${f2(r.listener.afterPause2)} ms.`)
  }
  console.log('\nOne process: time of the JS handler (performance.timeOrigin + now()) − frame.wallClockUs, ms. wallClockUs is on the local arrival clock (syncConfidence 0.5) until an RTCP sender report maps the RTP timestamp to the sender\'s capture clock (1); both ends share one host clock here, so the 1 rows are roughly the whole path from the sender, not the handoff alone.\n')
  console.log(markdownTable(['stream', 'clock', 'frames', 'p50', 'p95', 'min', 'max'], drows))
  const lrows = []
  for (const c of ['vp8', 'vp9']) {
    const r = video[c]
    if (r.error) continue
    lrows.push([c.toUpperCase(), `${fmt(r.listener.cpuPct)} (${r.listener.sent} frames)`, `${fmt(r.noListener.cpuPct)} (${r.noListener.sent} frames)`, fmt(r.listener.cpuPct - r.noListener.cpuPct), `${fmt(r.listener.jsActivePct)} / ${fmt(r.noListener.jsActivePct)}`])
  }
  console.log('\nOne process, 720p30 a → b: CPU with a \'video-frame\' listener (reads the frame number from 16 blocks and data[0]) and with no listener at all. The difference is the listener only; the handoff happens in both.\n')
  console.log(markdownTable(['codec', 'CPU % with listener', 'CPU % without', 'difference (points)', 'JS thread busy % with / without'], lrows))

  // 5. memory
  console.log(`\n### 5. Memory while streaming audio + 720p30 video, ${MEM_PAIRS} pairs a → b in one process (node --expose-gc; RSS after GC)\n`)
  console.log('base = after one warm-up pair streamed 1 s and closed (the 32 pattern frames, 44 MB, are allocated before it); idle = the pairs connected with audio + video tracks, no frames sent since the first; streaming = after 8 s of 20 ms audio + 30 fps video on every pair. Per peer = (streaming − base) / (2 × pairs): a pair is one sending and one receiving peer; per pair = both ends.\n')
  const mrows = []
  for (const [key, label] of [['vp8', 'VP8'], ['vp9', 'VP9'], ['vp8mmap', 'VP8, MALLOC_MMAP_THRESHOLD_=131072']]) {
    const r = memory[key]
    if (r.error) { mrows.push([label, '—', '—', '—', '—', '—', '—', '—', '< 40', `**${r.error}**`]); continue }
    const perPeer = (r.streaming.rss - r.base.rss) / (2 * r.pairs) / MB
    const perPair = (r.streaming.rss - r.base.rss) / r.pairs / MB
    const vsIdle = (r.streaming.rss - r.idle.rss) / r.pairs / MB
    mrows.push([label, fmt(r.base.rss / MB), fmt(r.idle.rss / MB), `${fmt(r.streaming.rss / MB)} (peak ${fmt(r.peak / MB)})`,
      fmt(perPeer), fmt(perPair), fmt(vsIdle), `${fmt(r.closed.rss / MB)}; fds ${r.base.fds} → ${r.streaming.fds} → ${r.closed.fds}; threads ${r.base.threads} → ${r.streaming.threads} → ${r.closed.threads}`,
      '< 40', perPeer < 40 ? 'yes' : 'no'])
    const rxs = r.rx.map((x) => `${x.audio}/${r.sent.audio} audio, ${x.video}/${r.sent.video} video`).join('; ')
    notes.push(`memory ${label}: frames received per pair during the 8 s: ${rxs}; process CPU ${fmt(r.cpuPct)} % of one core (other ${fmt(r.otherPct)} %); JS heap ${fmt(r.streaming.heap / MB)} MB, ArrayBuffers ${fmt(r.streaming.arrayBuffers / MB)} MB while streaming.${r.errors.length ? ` Errors: ${[...new Set(r.errors)].join(' | ')}` : ''}`)
  }
  console.log(markdownTable(['run', 'base MB', 'idle MB', 'streaming MB', 'per peer MB', 'per pair MB', 'streaming − idle, per pair MB', 'after closing: RSS MB; fds; threads', 'goal per peer MB', 'met?'], mrows))

  // 6. clicks
  console.log("\n### 6. Audio Node → Node latency: sendAudio() call → the 'audio-frame' event holding the click (ms; includes the receiver's jitter buffer, jitterBufferMs)\n")
  if (audio.error) console.log(`**${audio.error}**`)
  else {
    const k = audio.clicks
    console.log(markdownTable(['clicks sent', 'detected', 'missed', 'spurious', 'p50', 'p95', 'min', 'max', 'burst onset shift in the decoded frame, samples p50'],
      [[String(k.sent), String(k.detected), String(k.missed), String(k.spurious), f2(k.latency.p50), f2(k.latency.p95), f2(k.latency.min), f2(k.latency.max), `${fmt(k.sampleShift.p50, 0)} (= ${f2(k.sampleShift.p50 / 48)} ms)`]]))
    console.log('\nA 2 ms 3 kHz burst (amplitude 0.8) at sample 100 of every 5th 20 ms frame, silence otherwise, paced at 20 ms; detected when |sample| > 0.2. Covers encode, RTP, SRTP, UDP on loopback, decode and the handoff to JS. Not included: the 20 ms of framing, capture and playout buffers, and the codec delay, which is in the samples instead: the burst appears that many samples later inside the same decoded frame (Opus look-ahead).')
  }

  for (const [name, r] of [['audio', audio], ['video vp8', video.vp8], ['video vp9', video.vp9]]) {
    if (r.errors?.length) notes.push(`${name}: transport errors: ${[...new Set(r.errors)].join(' | ')}`)
  }
  for (const c of ['vp8', 'vp9']) {
    const L = video[c]?.listener
    if (L?.late) notes.push(`video ${c}: ${L.late} of ${L.sent} frames were sent more than half a frame late (the previous sendVideo() took too long)`)
    if (L?.udpDrops) notes.push(`video ${c}: ${L.udpDrops} UDP receive-buffer drops (host-wide) during the window`)
    if (L?.unreadable) notes.push(`video ${c}: ${L.unreadable} received frames had no readable frame number`)
  }
  notes.push(`peers still registered at the signaling server after all children ended: ${leftAtServer}`)
  console.log('')
  for (const n of notes) console.log(`- ${n}`)
  stopDeadline()
}

if (process.argv[2] === '--child') {
  const [, , , kind, ...args] = process.argv
  if (kind === 'split-rx') await splitRx(args[0])
  else if (kind === 'split-tx') await splitTx(args[0], args[1], args[2])
  else {
    await childMain(() => {
      if (kind === 'audio') return audioChild(args[0])
      if (kind === 'video') return videoChild(args[0], args[1])
      if (kind === 'memory') return memoryChild(args[0], args[1], Number(args[2]))
      throw new Error(`unknown child ${kind}`)
    }, 170_000)
  }
} else {
  await main()
}
