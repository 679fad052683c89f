// Connect time: from the start of a connect to the first data-channel message delivered at the
// remote end, for fresh pairs on loopback.
//
//   remotemedia-webrtc  through its own SignalingServer (ws://127.0.0.1, JSON-RPC), two new
//                       WebRtcTransports per pair (bindAddress 127.0.0.1); clock starts at
//                       a.connectPeer(b), a sends on peer.defaultChannel, b receives it via
//                       b.on('data-channel', ch => ch.on('message', ...)).
//   node-datachannel,   direct in-process SDP/candidate exchange (no signaling server: the
//   @roamhq/wrtc,       descriptions and candidates are handed over by function calls), only
//   werift              127.0.0.1 candidates; clock starts before the PeerConnections exist.
//
// Usage: node benches/connect.mjs   (env BENCH_PAIRS=50 pairs per library, BENCH_WARMUP=3)
import {
  ensureBenchDeps, fmt, loadOptional, loadRemotemedia, machineInfo, markdownTable, now,
  procCounts, processDeadline, sleep, stats,
} from './common.mjs'
import { ndcOpenPair, rmOpenPair, w3cOpenPair, WERIFT_CONFIG } from './peers.mjs'

const PAIRS = Math.max(1, Number(process.env.BENCH_PAIRS ?? 50))
const WARMUP = Math.max(0, Number(process.env.BENCH_WARMUP ?? 3))
const LIB_BUDGET_MS = 120_000 // per library; a library that is slower stops early (and says so)
const MAX_FAILURES = 5

const stopDeadline = processDeadline(9 * 60_000, 'connect.mjs')
ensureBenchDeps()

// Runs `openPair` WARMUP + PAIRS times, one pair at a time, each closed before the next.
async function measure(label, openPair, pick) {
  const samples = {}
  const failures = []
  const shutdowns = []
  const t0 = now()
  let done = 0
  for (let i = 0; i < WARMUP + PAIRS; i++) {
    if (now() - t0 > LIB_BUDGET_MS) {
      failures.push(`stopped after ${done} pairs: ${LIB_BUDGET_MS / 1000} s budget used`)
      break
    }
    if (failures.length >= MAX_FAILURES) break
    let pair
    try {
      pair = await openPair()
    } catch (e) {
      failures.push(e.message)
      continue
    }
    if (i >= WARMUP) {
      for (const [k, v] of Object.entries(pick(pair))) (samples[k] ??= []).push(v)
      done++
    }
    await pair.close()
    if (i >= WARMUP && pair.shutdownMs !== undefined) shutdowns.push(pair.shutdownMs)
  }
  process.stderr.write(`[connect] ${label}: ${done} pairs in ${((now() - t0) / 1000).toFixed(1)} s` +
    (failures.length ? `, ${failures.length} failures: ${[...new Set(failures)].slice(0, 3).join(' | ')}` : '') + '\n')
  return { samples, failures, done, shutdowns }
}

const rows = []
const notes = []
const row = (lib, how, r, key, goal) => {
  const s = stats(r.samples[key] ?? [])
  rows.push([lib, how, `${r.done}${r.failures.length ? ` (${r.failures.length} failed)` : ''}`,
    fmt(s.p50), fmt(s.p95), fmt(s.min), fmt(s.max), goal])
}

// ---- remotemedia-webrtc -------------------------------------------------------------------
{
  const rm = loadRemotemedia()
  const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const before = procCounts()
  const r = await measure('remotemedia-webrtc', () => rmOpenPair(rm, server),
    (p) => ({ connect: p.connectMs, resolve: p.resolveMs, cold: p.coldMs }))
  await sleep(500)
  const after = procCounts()
  const left = server.peerIds.length
  await server.close()
  const how = 'own SignalingServer (ws://127.0.0.1), 2 transports in this process'
  row('remotemedia-webrtc', `${how}: connectPeer() → first message at b`, r, 'connect', '< 15 p50, < 40 p95')
  row('remotemedia-webrtc', 'in-process pair (same measurement: there is no direct-SDP API, SDP goes through the loopback SignalingServer)', r, 'connect', '≤ 5 p50')
  row('remotemedia-webrtc', 'same pairs: connectPeer() promise resolved (default channel open at a)', r, 'resolve', '')
  row('remotemedia-webrtc', 'same pairs, cold: new WebRtcTransport ×2 + start() + connect → first message', r, 'cold', '')
  const sd = stats(r.shutdowns)
  notes.push(`remotemedia-webrtc: shutdown of both transports of a pair p50 ${fmt(sd.p50)} ms, p95 ${fmt(sd.p95)} ms, max ${fmt(sd.max)} ms.`)
  notes.push(`remotemedia-webrtc: after ${WARMUP + r.done} pairs opened and shut down: fds ${before.fds} → ${after.fds}, threads ${before.threads} → ${after.threads}, peers still registered at the signaling server: ${left}.`)
  if (r.failures.length) notes.push(`remotemedia-webrtc failures: ${[...new Set(r.failures)].join(' | ')}`)
}

// ---- comparison libraries (direct in-process SDP exchange) ---------------------------------
const direct = 'direct in-process SDP/candidate exchange, no signaling server'
const comparisons = [
  ['node-datachannel', (m) => () => ndcOpenPair(m), '5–8 (notes)'],
  ['@roamhq/wrtc', (m) => () => w3cOpenPair(m.RTCPeerConnection), '113–127 (notes)'],
  ['werift', (m) => () => w3cOpenPair(m.RTCPeerConnection, WERIFT_CONFIG), '145–160 (notes)'],
]
for (const [name, make, ref] of comparisons) {
  const lib = loadOptional(name)
  if (lib.error) {
    rows.push([name, `not available: ${lib.error}`, '0', '—', '—', '—', '—', ''])
    continue
  }
  const r = await measure(name, make(lib.mod), (p) => ({ connect: p.connectMs }))
  row(`${name} ${lib.version}`, `${direct}: createDataChannel → first message at b`, r, 'connect', `ref. ${ref}`)
  if (r.failures.length) notes.push(`${name} failures: ${[...new Set(r.failures)].join(' | ')}`)
}

console.log(`\n## Connect time, loopback (ms) — ${machineInfo()}\n`)
console.log(`${PAIRS} measured pairs per library after ${WARMUP} warm-up pairs; each pair is new and closed before the next.\n`)
console.log(markdownTable(['library', 'path / what is timed', 'pairs', 'p50', 'p95', 'min', 'max', 'goal / reference (ms)'], rows))
console.log('')
for (const n of notes) console.log(`- ${n}`)
stopDeadline()
// Some comparison libraries keep native threads or sockets alive after close(): exit explicitly.
process.exit(0)
