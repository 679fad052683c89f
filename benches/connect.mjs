// Connect time: from the start of a connect to the first data-channel message delivered at the
// remote end, for fresh pairs on loopback. Each library runs in its own child process.
//
//   remotemedia-webrtc  through its own SignalingServer (ws://127.0.0.1, JSON-RPC), two new
//                       WebRtcTransports per pair (bindAddress 127.0.0.1, unique peer ids);
//                       clock starts at a.connectPeer(b), a sends on peer.defaultChannel, b
//                       receives it via b.on('data-channel', ch => ch.on('message', ...)).
//                       Both transports live in one process: this is also our "in-process pair".
//   node-datachannel,   direct in-process SDP/candidate exchange (no signaling server: the
//   @roamhq/wrtc,       descriptions and candidates are handed over by function calls), only
//   werift              127.0.0.1 candidates; clock starts before the PeerConnections exist.
//
// Usage: node benches/connect.mjs   (env BENCH_PAIRS=50 pairs per library, BENCH_WARMUP=3)
import { fileURLToPath } from 'node:url'
import {
  childMain, ensureBenchDeps, fmt, loadOptional, loadRemotemedia, machineInfo, markdownTable,
  now, procCounts, processDeadline, runJsonChild, sleep, stats,
} from './common.mjs'
import { ndcOpenPair, rmOpenPair, w3cOpenPair, WERIFT_CONFIG } from './peers.mjs'

const PAIRS = Math.max(1, Number(process.env.BENCH_PAIRS ?? 50))
const WARMUP = Math.max(0, Number(process.env.BENCH_WARMUP ?? 3))
const LIB_BUDGET_MS = 120_000 // per library; a slower library stops early and says so
const MAX_FAILURES = 5

// Runs `openPair` WARMUP + PAIRS times, one pair at a time, each closed before the next.
async function measure(openPair, pick) {
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
  return { samples, failures, done, shutdowns, seconds: (now() - t0) / 1000 }
}

// ---- child: one library ----------------------------------------------------------------------

async function child(lib) {
  if (lib === 'remotemedia-webrtc') {
    const rm = loadRemotemedia()
    const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
    const before = procCounts()
    const r = await measure(() => rmOpenPair(rm, server),
      (p) => ({
        connect: p.connectMs, resolve: p.resolveMs, cold: p.coldMs,
        stateConnecting: p.states.connecting ?? NaN, stateConnected: p.states.connected ?? NaN,
      }))
    await sleep(500)
    r.before = before
    r.after = procCounts()
    r.leftAtServer = server.peerIds.length
    await server.close()
    return r
  }
  const m = loadOptional(lib)
  if (m.error) return { error: `not available: ${m.error}` }
  const open = {
    'node-datachannel': () => ndcOpenPair(m.mod),
    '@roamhq/wrtc': () => w3cOpenPair(m.mod.RTCPeerConnection),
    werift: () => w3cOpenPair(m.mod.RTCPeerConnection, WERIFT_CONFIG),
  }[lib]
  const r = await measure(open, (p) => ({ connect: p.connectMs }))
  r.version = m.version
  return r
}

// ---- parent -----------------------------------------------------------------------------------

async function main() {
  const stopDeadline = processDeadline(9 * 60_000, 'connect.mjs')
  ensureBenchDeps()
  const script = fileURLToPath(import.meta.url)
  const results = {}
  for (const lib of ['remotemedia-webrtc', 'node-datachannel', '@roamhq/wrtc', 'werift']) {
    const r = await runJsonChild(script, ['--child', lib], { timeoutMs: LIB_BUDGET_MS + 30_000 })
    results[lib] = r
    process.stderr.write(`[connect] ${lib}: ${r.error ? r.error : `${r.done} pairs in ${r.seconds.toFixed(1)} s` +
      (r.failures.length ? `, ${r.failures.length} failures: ${[...new Set(r.failures)].slice(0, 3).join(' | ')}` : '')}\n`)
  }

  const rows = []
  const notes = []
  const row = (lib, how, r, key, goal) => {
    if (r.error) {
      rows.push([lib, `${how}: **${r.error}**`, '0', '—', '—', '—', '—', '—', goal])
      return
    }
    const v = r.samples[key] ?? []
    const s = stats(v)
    rows.push([lib, how, `${r.done}${r.failures.length ? ` (${r.failures.length} failed)` : ''}`,
      fmt(s.p50), fmt(s.p95), fmt(s.min), fmt(s.max), String(v.filter((x) => x > 100).length), goal])
  }

  const rm = results['remotemedia-webrtc']
  row('remotemedia-webrtc', 'own SignalingServer (ws://127.0.0.1), 2 transports in one process: connectPeer() → first message at b', rm, 'connect', '< 15 p50, < 40 p95')
  row('remotemedia-webrtc', 'in-process pair: the same pairs (there is no direct-SDP API; SDP goes through the loopback SignalingServer)', rm, 'connect', '≤ 5 p50')
  row('remotemedia-webrtc', 'same pairs: connectPeer() promise resolved (default channel open at a)', rm, 'resolve', '')
  row('remotemedia-webrtc', 'same pairs, cold: new WebRtcTransport ×2 + start() + connect → first message', rm, 'cold', '')
  if (!rm.error) {
    const ms = (k) => fmt(stats((rm.samples[k] ?? []).filter(Number.isFinite)).p50)
    notes.push(`remotemedia-webrtc, where the time goes (p50 ms after connectPeer()): peer-state 'connecting' at a ${ms('stateConnecting')}, 'connected' (ICE + DTLS up) ${ms('stateConnected')}, connectPeer() resolved (SCTP + DCEP, default channel open) ${ms('resolve')}, first message at b ${ms('connect')}.`)
    const sd = stats(rm.shutdowns)
    notes.push(`remotemedia-webrtc: shutdown() of both transports of a pair: p50 ${fmt(sd.p50)} ms, p95 ${fmt(sd.p95)} ms, max ${fmt(sd.max)} ms.`)
    notes.push(`remotemedia-webrtc: after ${WARMUP + rm.done} pairs opened and shut down: fds ${rm.before.fds} → ${rm.after.fds}, threads ${rm.before.threads} → ${rm.after.threads}, peers still registered at the signaling server: ${rm.leftAtServer}.`)
    if (rm.failures.length) notes.push(`remotemedia-webrtc failures: ${[...new Set(rm.failures)].join(' | ')}`)
  }
  const direct = 'direct in-process SDP/candidate exchange, no signaling server: createDataChannel → first message at b'
  for (const [lib, ref] of [['node-datachannel', '5–8 (notes)'], ['@roamhq/wrtc', '113–127 (notes)'], ['werift', '145–160 (notes)']]) {
    const r = results[lib]
    row(r.version ? `${lib} ${r.version}` : lib, direct, r, 'connect', `ref. ${ref}`)
    if (!r.error && r.failures.length) notes.push(`${lib} failures: ${[...new Set(r.failures)].join(' | ')}`)
  }

  console.log(`\n## Connect time, loopback (ms) — ${machineInfo()}\n`)
  console.log(`${PAIRS} measured pairs per library after ${WARMUP} warm-up pairs, each library in its own process; every pair is new and is closed before the next.\n`)
  console.log(markdownTable(['library', 'path / what is timed', 'pairs', 'p50', 'p95', 'min', 'max', '> 100 ms', 'goal / reference (ms)'], rows))
  console.log('')
  for (const n of notes) console.log(`- ${n}`)
  stopDeadline()
}

if (process.argv[2] === '--child') {
  // Some comparison libraries keep native threads alive after close(): childMain exits.
  await childMain(() => child(process.argv[3]), LIB_BUDGET_MS + 20_000)
} else {
  await main()
}
