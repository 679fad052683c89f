// Data-channel throughput (reliable, ordered, binary), echo round-trip time and memory per
// connected idle peer, remotemedia-webrtc next to node-datachannel, loopback only.
//
//   throughput  one connected pair per library; A sends BENCH_TOTAL_MIB (default 64) MiB in
//               16 KiB and then 64 KiB binary messages, B counts bytes (and checks the sequence
//               number each message carries). Clock: first send → last byte counted at B.
//               remotemedia-webrtc: at most SEND_WINDOW send() promises outstanding (the
//               library's own per-channel buffer limit, 1 MiB by default, applies behind them).
//               node-datachannel: sends while bufferedAmount ≤ 1 MiB, then waits for
//               onBufferedAmountLow (threshold 256 KiB).
//   echo RTT    1000 sequential round trips of a small JSON message on the same pair.
//   memory      a child process (node --expose-gc) opens N=50 connected pairs (100 peers) and
//               reports (RSS after − RSS before) / 2N after GC; remotemedia-webrtc's signaling
//               server runs in this (parent) process, so it is not counted.
//
// Usage: node benches/throughput.mjs   (env BENCH_TOTAL_MIB, BENCH_RUNS=3, BENCH_RTT=1000,
//        BENCH_MEM_PAIRS=50; `--child memory <lib> <signalingUrl>` is the internal child mode)
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import {
  deferred, ensureBenchDeps, fmt, loadOptional, loadRemotemedia, machineInfo, markdownTable,
  now, procCounts, processDeadline, sleep, stats, withTimeout,
} from './common.mjs'
import { ndcOpenPair, rmOpenPair } from './peers.mjs'

const KiB = 1024
const MiB = 1024 * KiB
const TOTAL = Math.max(1, Number(process.env.BENCH_TOTAL_MIB ?? 64)) * MiB
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3))
const RTT_ROUNDS = Math.max(1, Number(process.env.BENCH_RTT ?? 1000))
const MEM_PAIRS = Math.max(1, Number(process.env.BENCH_MEM_PAIRS ?? 50))
const SIZES = [16 * KiB, 64 * KiB]
const SEND_WINDOW = 64
const NDC_HIGH_WATER = 1 * MiB
const NDC_LOW_WATER = 256 * KiB
const RUN_TIMEOUT_MS = 60_000
const RTT_TIMEOUT_MS = 2_000

// ---- per-library senders / receivers --------------------------------------------------------

// Counts bytes at B and checks the sequence numbers (first 4 bytes, big-endian) arrive in order.
function receiver(expectedBytes) {
  const done = deferred()
  const state = { bytes: 0, next: 0, disorder: 0, done }
  state.take = (buf) => {
    if (buf.readUInt32BE(0) !== state.next) state.disorder++
    state.next++
    state.bytes += buf.length
    if (state.bytes >= expectedBytes) done.resolve(now())
  }
  return state
}

async function rmThroughput(pair, size, total) {
  const count = Math.ceil(total / size)
  const rx = receiver(count * size)
  pair.onB = (m) => { if (m.kind === 'binary') rx.take(m.data) }
  const bufs = Array.from({ length: SEND_WINDOW }, () => randomBytes(size))
  const ring = new Array(SEND_WINDOW)
  const t0 = now()
  for (let i = 0; i < count; i++) {
    const slot = i % SEND_WINDOW
    if (ring[slot]) await ring[slot] // the buffer of this slot is SCTP's now: reuse it
    bufs[slot].writeUInt32BE(i, 0)
    ring[slot] = pair.chA.send(bufs[slot])
  }
  await Promise.all(ring.filter(Boolean))
  const t1 = await withTimeout(rx.done.promise, RUN_TIMEOUT_MS, 'all bytes at b')
  return { mbps: (count * size) / 1e6 / ((t1 - t0) / 1000), disorder: rx.disorder }
}

async function ndcThroughput(pair, size, total) {
  const count = Math.ceil(total / size)
  const rx = receiver(count * size)
  pair.onB = (m) => { if (Buffer.isBuffer(m)) rx.take(m) }
  const dc = pair.chA
  let low = null
  dc.setBufferedAmountLowThreshold(NDC_LOW_WATER)
  dc.onBufferedAmountLow(() => { if (low) { const d = low; low = null; d.resolve() } })
  const buf = randomBytes(size) // sendMessageBinary copies: one buffer is enough
  const t0 = now()
  for (let i = 0; i < count; i++) {
    while (dc.bufferedAmount() > NDC_HIGH_WATER) {
      low = deferred()
      // A low event may have fired between the check and here: poll as a fallback.
      await Promise.race([low.promise, sleep(5)])
    }
    buf.writeUInt32BE(i, 0)
    dc.sendMessageBinary(buf) // false = queued in libdatachannel's buffer, not an error
  }
  const t1 = await withTimeout(rx.done.promise, RUN_TIMEOUT_MS, 'all bytes at b')
  return { mbps: (count * size) / 1e6 / ((t1 - t0) / 1000), disorder: rx.disorder }
}

// 1000 sequential JSON round trips A → B → A; B echoes what it got.
async function echoRtt(pair, sendA, echoB, parse) {
  let waiting = null
  pair.onB = (m) => echoB(m)
  pair.onA = (m) => { const d = waiting; waiting = null; d?.resolve(parse(m)) }
  const samples = []
  const warm = 50
  for (let i = 0; i < warm + RTT_ROUNDS; i++) {
    waiting = deferred()
    const t0 = now()
    sendA({ seq: i, t: Date.now(), kind: 'echo' })
    const reply = await withTimeout(waiting.promise, RTT_TIMEOUT_MS, `echo ${i}`)
    const dt = now() - t0
    if (reply.seq !== i) throw new Error(`echo out of order: sent ${i}, got ${reply.seq}`)
    if (i >= warm) samples.push(dt)
  }
  return stats(samples)
}

const rmEcho = (pair) => echoRtt(pair,
  (obj) => { pair.chA.send(obj).catch(() => {}) },
  (m) => { pair.chB.send(m.data).catch(() => {}) },
  (m) => m.data)
const ndcEcho = (pair) => echoRtt(pair,
  (obj) => pair.chA.sendMessage(JSON.stringify(obj)),
  (m) => pair.chB.sendMessage(m),
  (m) => JSON.parse(m))

// ---- memory child -----------------------------------------------------------------------------

async function gcSettle() {
  for (let i = 0; i < 4; i++) {
    global.gc()
    await sleep(150)
  }
}
const rssBytes = () => process.memoryUsage().rss

async function memoryChild(lib, url) {
  if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc')
  let open, extra = {}
  if (lib === 'remotemedia-webrtc') {
    const rm = loadRemotemedia()
    const server = { url } // the signaling server runs in the parent process
    open = () => rmOpenPair(rm, server)
  } else if (lib === 'node-datachannel') {
    const { mod, error } = loadOptional('node-datachannel')
    if (error) throw new Error(error)
    open = () => ndcOpenPair(mod)
  } else throw new Error(`unknown lib ${lib}`)
  // One pair opened and closed first, so lazily created runtimes, thread pools and certificates
  // are part of the baseline.
  await (await open()).close()
  await sleep(500)
  await gcSettle()
  const base = { rss: rssBytes(), ...procCounts() }
  const pairs = []
  const t0 = now()
  for (let i = 0; i < MEM_PAIRS && now() - t0 < 60_000; i++) pairs.push(await open())
  await sleep(2000) // idle: setup garbage and timers settle
  await gcSettle()
  const loaded = { rss: rssBytes(), ...procCounts() }
  const cpu0 = process.cpuUsage()
  const tIdle = now()
  await sleep(3000)
  const cpu = process.cpuUsage(cpu0)
  const idleCpuPct = ((cpu.user + cpu.system) / 1000 / (now() - tIdle)) * 100
  for (const p of pairs) await p.close()
  await sleep(1000)
  await gcSettle()
  const closed = { rss: rssBytes(), ...procCounts() }
  return { lib, pairs: pairs.length, peers: 2 * pairs.length, base, loaded, closed, idleCpuPct, ...extra }
}

function runChild(lib, url) {
  return new Promise((resolve) => {
    const script = fileURLToPath(import.meta.url)
    const child = spawn(process.execPath, ['--expose-gc', script, '--child', 'memory', lib, url ?? '-'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        const r = JSON.parse(line)
        resolve(r.error ? { error: r.error } : r)
      } catch {
        resolve({ error: `child exited with ${code}: ${out.slice(-300)}` })
      }
    })
  })
}

// ---- main ---------------------------------------------------------------------------------------

async function main() {
  const stopDeadline = processDeadline(9 * 60_000, 'throughput.mjs')
  ensureBenchDeps()
  const rm = loadRemotemedia()
  const ndc = loadOptional('node-datachannel')
  const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const tput = []
  const rtt = []
  const notes = []

  const libs = [
    ['remotemedia-webrtc', () => rmOpenPair(rm, server), rmThroughput, rmEcho,
      `window of ${SEND_WINDOW} send() promises (+ library's 1 MiB channel buffer)`],
  ]
  if (ndc.error) {
    tput.push(['node-datachannel', `not available: ${ndc.error}`, '—', '—', ''])
  } else {
    libs.push([`node-datachannel ${ndc.version}`, () => ndcOpenPair(ndc.mod), ndcThroughput, ndcEcho,
      'bufferedAmount ≤ 1 MiB, onBufferedAmountLow at 256 KiB'])
  }

  const byLib = {}
  for (const [name, open, run, echo, how] of libs) {
    let pair
    try {
      pair = await open()
      for (const size of SIZES) {
        const r = []
        let disorder = 0
        for (let k = 0; k < RUNS; k++) {
          const x = await run(pair, size, TOTAL)
          r.push(x.mbps)
          disorder += x.disorder
        }
        const s = stats(r)
        ;(byLib[size] ??= {})[name] = s.p50
        tput.push([name, `${size / KiB} KiB`, fmt(s.p50), `${fmt(s.min)}–${fmt(s.max)}`, how])
        if (disorder) notes.push(`${name}: ${disorder} messages arrived out of order at ${size / KiB} KiB`)
        process.stderr.write(`[throughput] ${name} ${size / KiB} KiB: ${r.map((x) => fmt(x)).join(', ')} MB/s\n`)
      }
      const e = await echo(pair)
      rtt.push([name, String(e.n), fmt(e.p50, 3), fmt(e.p95, 3), fmt(e.min, 3), fmt(e.max, 3)])
      process.stderr.write(`[throughput] ${name} echo RTT p50 ${fmt(e.p50, 3)} ms\n`)
      if (pair.errors?.length) notes.push(`${name} transport errors: ${pair.errors.join('; ')}`)
    } catch (err) {
      notes.push(`${name}: failed: ${err.message}`)
      process.stderr.write(`[throughput] ${name} failed: ${err.stack}\n`)
    } finally {
      await pair?.close()
    }
  }

  // Memory per connected idle peer, each library in its own child process.
  const mem = []
  for (const lib of ['remotemedia-webrtc', ...(ndc.error ? [] : ['node-datachannel'])]) {
    const r = await runChild(lib, lib === 'remotemedia-webrtc' ? server.url : null)
    if (r.error) {
      mem.push([lib, '—', '—', '—', '—', '—', `failed: ${r.error}`])
      continue
    }
    const MB = 1e6
    const perPeer = (r.loaded.rss - r.base.rss) / r.peers / MB
    mem.push([
      lib, String(r.peers), fmt(r.base.rss / MB), fmt(r.loaded.rss / MB), fmt(perPeer, 2),
      fmt(r.idleCpuPct, 1),
      `after close: RSS ${fmt(r.closed.rss / MB)} MB, fds ${r.base.fds} → ${r.loaded.fds} → ${r.closed.fds}, threads ${r.base.threads} → ${r.loaded.threads} → ${r.closed.threads}`,
    ])
    process.stderr.write(`[memory] ${lib}: ${fmt(perPeer, 2)} MB per peer\n`)
  }
  await server.close()

  console.log(`\n## Data-channel throughput, reliable ordered, loopback — ${machineInfo()}\n`)
  console.log(`${TOTAL / MiB} MiB per run, ${RUNS} runs per size on one connected pair; MB/s = 10^6 bytes/s from the first send to the last byte counted at the receiver.\n`)
  console.log(markdownTable(['library', 'message', 'MB/s (median)', 'min–max', 'sender flow control'], tput))
  for (const size of SIZES) {
    const v = byLib[size] ?? {}
    const ours = v['remotemedia-webrtc']
    const theirs = Object.entries(v).find(([k]) => k.startsWith('node-datachannel'))?.[1]
    if (ours !== undefined && theirs !== undefined) {
      console.log(`\n${size / KiB} KiB: remotemedia-webrtc / node-datachannel = ${fmt(ours / theirs, 2)} (goal ≥ 1.00 at 64 KiB)`)
    }
  }
  console.log(`\n## Echo round trip, small JSON message, ${RTT_ROUNDS} sequential round trips after 50 warm-up (ms)\n`)
  console.log(markdownTable(['library', 'round trips', 'p50', 'p95', 'min', 'max'], rtt))
  console.log(`\n## Memory per connected idle peer (${MEM_PAIRS} pairs = ${2 * MEM_PAIRS} peers in one process, node --expose-gc)\n`)
  console.log('RSS before = after one warm-up pair was opened and closed; RSS with pairs = after 2 s idle and GC; per peer = delta / peers; goal < 2 MB per peer. Idle CPU = % of one core over 3 s with all pairs connected and idle.\n')
  console.log(markdownTable(['library', 'peers', 'RSS before (MB)', 'RSS with pairs (MB)', 'per peer (MB)', 'idle CPU %', 'leak check'], mem))
  if (notes.length) {
    console.log('')
    for (const n of notes) console.log(`- ${n}`)
  }
  stopDeadline()
  process.exit(0)
}

if (process.argv[2] === '--child') {
  const stop = processDeadline(140_000, 'memory child')
  let out
  try {
    out = await memoryChild(process.argv[4], process.argv[5])
  } catch (e) {
    out = { error: e.message }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
  stop()
  process.exit(0)
} else {
  await main()
}
