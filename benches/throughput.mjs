// Data-channel throughput (reliable, ordered, binary), echo round-trip time and memory per
// connected idle peer, remotemedia-webrtc next to node-datachannel, loopback only. Every
// measurement runs in a child process of its own, one library per process.
//
//   throughput  one connected pair per library; A sends BENCH_TOTAL_MIB (default 64) MiB in
//               16 KiB and then 64 KiB binary messages, B counts bytes (and checks the sequence
//               number each message carries). Clock: first send → last byte counted at B.
//               remotemedia-webrtc: at most SEND_WINDOW send() promises outstanding (each
//               resolves once SCTP took the message; the library's 1 MiB per-channel SCTP
//               buffer limit applies behind them). node-datachannel: sends while
//               bufferedAmount ≤ 1 MiB, then waits for onBufferedAmountLow (256 KiB).
//   echo RTT    1000 sequential round trips of a small JSON message on the same pair.
//   memory      a child (node --expose-gc) opens N=50 connected pairs (100 peers) and reports
//               (RSS with pairs − RSS before) / 2N after GC, idle CPU, and RSS / fds / threads
//               after closing them and after two more open/close rounds. remotemedia-webrtc's
//               signaling server runs in the parent process, so it is not counted.
//
// Usage: node benches/throughput.mjs   (env BENCH_TOTAL_MIB=64, BENCH_RUNS=3, BENCH_RTT=1000,
//        BENCH_MEM_PAIRS=50). Internal child modes: --child throughput <lib>,
//        --child memory <lib> <signalingUrl>.
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import {
  childMain, deferred, ensureBenchDeps, fmt, loadOptional, loadRemotemedia, machineInfo,
  markdownTable, now, procCounts, processDeadline, runJsonChild, sleep, stats, udpRcvbufErrors,
  withTimeout,
} from './common.mjs'
import { ndcOpenPair, rmOpenPair } from './peers.mjs'

const KiB = 1024
const MiB = 1024 * KiB
const TOTAL = Math.max(1, Number(process.env.BENCH_TOTAL_MIB ?? 64)) * MiB
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3))
const RTT_ROUNDS = Math.max(1, Number(process.env.BENCH_RTT ?? 1000))
const MEM_PAIRS = Math.max(1, Number(process.env.BENCH_MEM_PAIRS ?? 50))
const MEM_EXTRA_ROUNDS = 2
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
  let open
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
  // Two more rounds of opening and closing the same number of pairs: RSS that keeps growing
  // round after round is a leak, RSS that stays at the first round's level is allocator reuse.
  const rounds = []
  for (let k = 0; k < MEM_EXTRA_ROUNDS; k++) {
    const more = []
    for (let i = 0; i < MEM_PAIRS && now() - t0 < 100_000; i++) more.push(await open())
    for (const p of more) await p.close()
    await sleep(1000)
    await gcSettle()
    rounds.push({ rss: rssBytes(), ...procCounts() })
  }
  return { lib, pairs: pairs.length, peers: 2 * pairs.length, base, loaded, closed, rounds, idleCpuPct }
}

// ---- throughput + echo child ----------------------------------------------------------------------

async function throughputChild(lib) {
  let open, run, echo, version = ''
  let server = null
  if (lib === 'remotemedia-webrtc') {
    const rm = loadRemotemedia()
    server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
    open = () => rmOpenPair(rm, server)
    run = rmThroughput
    echo = rmEcho
  } else if (lib === 'node-datachannel') {
    const m = loadOptional('node-datachannel')
    if (m.error) return { error: `not available: ${m.error}` }
    version = m.version
    open = () => ndcOpenPair(m.mod)
    run = ndcThroughput
    echo = ndcEcho
  } else throw new Error(`unknown lib ${lib}`)
  const out = { version, sizes: {}, notes: [] }
  let pair
  try {
    pair = await open()
    for (const size of SIZES) {
      const r = { mbps: [], disorder: 0, drops: null }
      const drops0 = udpRcvbufErrors()
      for (let k = 0; k < RUNS; k++) {
        const x = await run(pair, size, TOTAL)
        r.mbps.push(x.mbps)
        r.disorder += x.disorder
      }
      if (drops0 !== null) r.drops = udpRcvbufErrors() - drops0
      out.sizes[size] = r
      process.stderr.write(`[throughput] ${lib} ${size / KiB} KiB: ${r.mbps.map((x) => fmt(x)).join(', ')} MB/s, UDP rcvbuf drops ${r.drops}\n`)
    }
    out.rtt = await echo(pair)
    if (pair.errors?.length) out.notes.push(`transport errors: ${pair.errors.join('; ')}`)
  } catch (err) {
    out.error = err.message
  } finally {
    await pair?.close()
    await server?.close()
  }
  return out
}

// ---- main ---------------------------------------------------------------------------------------

async function main() {
  const stopDeadline = processDeadline(9 * 60_000, 'throughput.mjs')
  ensureBenchDeps()
  const script = fileURLToPath(import.meta.url)
  const LIBS = ['remotemedia-webrtc', 'node-datachannel']
  const HOW = {
    'remotemedia-webrtc': `window of ${SEND_WINDOW} send() promises (+ the library's 1 MiB SCTP buffer)`,
    'node-datachannel': 'bufferedAmount ≤ 1 MiB, then wait for onBufferedAmountLow (256 KiB)',
  }
  const tput = []
  const rtt = []
  const notes = []
  const median = {}
  for (const lib of LIBS) {
    const r = await runJsonChild(script, ['--child', 'throughput', lib], { timeoutMs: 240_000 })
    const name = r.version ? `${lib} ${r.version}` : lib
    if (r.error && !r.sizes) {
      tput.push([name, '—', '—', '—', '—', `**${r.error}**`])
      continue
    }
    if (r.error) notes.push(`${name}: failed part-way: ${r.error}`)
    for (const n of r.notes ?? []) notes.push(`${name}: ${n}`)
    for (const size of SIZES) {
      const x = r.sizes[size]
      if (!x) continue
      const s = stats(x.mbps)
      ;(median[size] ??= {})[lib] = s.p50
      tput.push([name, `${size / KiB} KiB`, fmt(s.p50), `${fmt(s.min)}–${fmt(s.max)}`, x.drops ?? '—', HOW[lib]])
      if (x.disorder) notes.push(`${name}: ${x.disorder} messages arrived out of order at ${size / KiB} KiB`)
    }
    if (r.rtt) rtt.push([name, String(r.rtt.n), fmt(r.rtt.p50, 3), fmt(r.rtt.p95, 3), fmt(r.rtt.min, 3), fmt(r.rtt.max, 3)])
  }

  // Memory per connected idle peer, each library in its own child process; remotemedia-webrtc's
  // signaling server runs here, in the parent, so that its per-peer state is not counted.
  const rm = loadRemotemedia()
  const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const mem = []
  for (const lib of LIBS) {
    const r = await runJsonChild(script, ['--child', 'memory', lib, server.url],
      { nodeArgs: ['--expose-gc'], timeoutMs: 150_000 })
    if (r.error) {
      mem.push([lib, '—', '—', '—', '—', '—', `**${r.error}**`])
      continue
    }
    const MB = 1e6
    const perPeer = (r.loaded.rss - r.base.rss) / r.peers / MB
    const after = [r.closed, ...r.rounds]
    mem.push([
      lib, String(r.peers), fmt(r.base.rss / MB), fmt(r.loaded.rss / MB), fmt(perPeer, 2), fmt(r.idleCpuPct, 1),
      `RSS ${after.map((x) => fmt(x.rss / MB)).join(' → ')} MB; fds ${r.base.fds} → ${r.loaded.fds} → ${after.map((x) => x.fds).join(' → ')}; threads ${r.base.threads} → ${r.loaded.threads} → ${after.map((x) => x.threads).join(' → ')}`,
    ])
    process.stderr.write(`[memory] ${lib}: ${fmt(perPeer, 2)} MB per peer\n`)
  }
  await server.close()

  console.log(`\n## Data-channel throughput, reliable ordered, loopback — ${machineInfo()}\n`)
  console.log(`${TOTAL / MiB} MiB per run, ${RUNS} runs per message size on one connected pair, each library in its own process; MB/s = 10^6 bytes/s from the first send to the last byte counted at the receiver.\n`)
  console.log(markdownTable(['library', 'message', 'MB/s (median)', 'min–max', 'UDP rcvbuf drops', 'sender flow control'], tput))
  console.log('\nUDP rcvbuf drops: datagrams the kernel dropped because a receiving socket\'s buffer was full, over all runs of the row (/proc/net/snmp Udp RcvbufErrors, host-wide).')
  for (const size of SIZES) {
    const v = median[size] ?? {}
    if (v['remotemedia-webrtc'] !== undefined && v['node-datachannel'] !== undefined) {
      console.log(`\n${size / KiB} KiB: remotemedia-webrtc / node-datachannel = ${fmt(v['remotemedia-webrtc'] / v['node-datachannel'], 2)}${size === 64 * KiB ? ' (goal ≥ 1.00)' : ''}`)
    }
  }
  console.log(`\n## Echo round trip, small JSON message, ${RTT_ROUNDS} sequential round trips after 50 warm-up (ms)\n`)
  console.log(markdownTable(['library', 'round trips', 'p50', 'p95', 'min', 'max'], rtt))
  console.log(`\n## Memory per connected idle peer (${MEM_PAIRS} pairs = ${2 * MEM_PAIRS} peers in one process, node --expose-gc)\n`)
  console.log('RSS before = after one warm-up pair was opened and closed; RSS with pairs = after 2 s idle and GC; per peer = (with − before) / peers; goal < 2 MB per peer. Idle CPU = % of one core over 3 s with all pairs connected and idle. Last column: after closing all pairs, then after each of two more rounds that open and close as many pairs again.\n')
  console.log(markdownTable(['library', 'peers', 'RSS before (MB)', 'RSS with pairs (MB)', 'per peer (MB)', 'idle CPU %', 'after closing (round 1 → 2 → 3)'], mem))
  if (notes.length) {
    console.log('')
    for (const n of notes) console.log(`- ${n}`)
  }
  stopDeadline()
}

if (process.argv[2] === '--child') {
  const [, , , kind, lib, url] = process.argv
  await childMain(() => (kind === 'memory' ? memoryChild(lib, url) : throughputChild(lib)), 220_000)
} else {
  await main()
}
