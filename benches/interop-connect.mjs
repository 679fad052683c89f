// Connect time from our transport to stacks we did not write, through our signaling server
// (issue 13): `a.connectPeer(id)` → the first message on the default channel arrives at the
// other stack. The other side is a SignalingPeer (__test__/interop/signaling-peer.mjs): that
// stack's W3C RTCPeerConnection on our JSON-RPC protocol, announcing, answering our offer and
// trickling its candidates as a browser page would. Node ↔ Node is the baseline.
//
// Each stack runs in its own child process; every connection is new and closed before the
// next. Goal: no 1-second tails (max < 50 ms) with any of them.
//
// Usage: node benches/interop-connect.mjs   (env BENCH_CONNECTS=30, BENCH_WARMUP=3)
import { fileURLToPath } from 'node:url'
import {
  childMain, ensureBenchDeps, fmt, loadOptional, loadRemotemedia, machineInfo, markdownTable,
  now, processDeadline, runJsonChild, sleep, stats,
} from './common.mjs'
import { WERIFT_CONFIG } from './peers.mjs'

const CONNECTS = Math.max(1, Number(process.env.BENCH_CONNECTS ?? 30))
const WARMUP = Math.max(0, Number(process.env.BENCH_WARMUP ?? 3))
const STACK_BUDGET_MS = 120_000
const FIRST_MESSAGE_TIMEOUT_MS = 10_000
const STACKS = ['remotemedia-webrtc', 'werift', '@roamhq/wrtc', 'node-datachannel']

function withTimeout(p, ms, what) {
  let t
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms) })])
    .finally(() => clearTimeout(t))
}

// The other side's RTCPeerConnection constructor and options, and its version.
function stack(name) {
  if (name === 'node-datachannel') {
    const m = loadOptional('node-datachannel/polyfill')
    const v = loadOptional('node-datachannel')
    return m.error ? m : { RTCPeerConnection: m.mod.RTCPeerConnection, config: {}, version: v.version, close: () => v.mod?.cleanup?.() }
  }
  const m = loadOptional(name)
  if (m.error) return m
  return { RTCPeerConnection: m.mod.RTCPeerConnection, mod: m.mod, config: name === 'werift' ? WERIFT_CONFIG : {}, version: m.version }
}

async function child(name) {
  const rm = loadRemotemedia()
  const server = await rm.SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const a = new rm.WebRtcTransport({ signalingUrl: server.url, peerId: 'bench-node', bindAddress: '127.0.0.1' })
  await a.start()
  const { SignalingPeer } = await import('../__test__/interop/signaling-peer.mjs')
  let other = null
  if (name !== 'remotemedia-webrtc') {
    other = stack(name)
    if (other.error) return { error: `not available: ${other.error}` }
    if (name === 'werift') {
      // werift's own deviations, worked around as in the interop test (werift-quirks.mjs).
      const { patchWerift, localStun } = await import('../__test__/interop/werift-quirks.mjs')
      patchWerift(other.mod)
      const stun = await localStun()
      other.config = { ...other.config, iceServers: [{ urls: stun.url }] }
      other.close = () => stun.close()
    }
  }
  const samples = []
  const resolved = []
  const failures = []
  const t0 = now()
  for (let i = 0; i < WARMUP + CONNECTS; i++) {
    if (now() - t0 > STACK_BUDGET_MS) {
      failures.push(`stopped after ${samples.length}: budget used`)
      break
    }
    if (failures.length >= 5) break
    const id = `bench-${i}`
    let remote
    let firstAt = 0
    let got
    const first = new Promise((resolve) => { got = resolve })
    try {
      if (other) {
        remote = new SignalingPeer({ url: server.url, peerId: id, RTCPeerConnection: other.RTCPeerConnection, config: other.config, capabilities: ['data'] })
        remote.pc.ondatachannel = (e) => {
          e.channel.onmessage = () => {
            firstAt = now()
            got()
          }
        }
        await remote.start()
      } else {
        remote = new rm.WebRtcTransport({ signalingUrl: server.url, peerId: id, bindAddress: '127.0.0.1' })
        remote.on('data-channel', (ch) => ch.on('message', () => {
          firstAt = now()
          got()
        }))
        await remote.start()
      }
      await sleep(20) // the announce reaches the server's registry
      const start = now()
      const peer = await a.connectPeer(id)
      const resolvedAt = now()
      peer.defaultChannel.send('ping')
      await withTimeout(first, FIRST_MESSAGE_TIMEOUT_MS, 'first message')
      if (i >= WARMUP) {
        samples.push(firstAt - start)
        resolved.push(resolvedAt - start)
      }
      await a.disconnectPeer(id)
    } catch (e) {
      failures.push(e.message)
      await a.disconnectPeer(id).catch(() => {})
    }
    if (other) await remote?.close()
    else await remote?.shutdown()
    await sleep(20)
  }
  await a.shutdown()
  await server.close()
  other?.close?.()
  return { samples, resolved, failures, version: other?.version ?? null, seconds: (now() - t0) / 1000 }
}

async function main() {
  const stop = processDeadline(9 * 60_000, 'interop-connect.mjs')
  ensureBenchDeps()
  const script = fileURLToPath(import.meta.url)
  const rows = []
  const notes = []
  for (const name of STACKS) {
    const r = await runJsonChild(script, ['--child', name], { timeoutMs: STACK_BUDGET_MS + 30_000 })
    process.stderr.write(`[interop-connect] ${name}: ${r.error ?? `${r.samples.length} connects in ${r.seconds.toFixed(1)} s`}\n`)
    const label = r.version ? `${name} ${r.version}` : name
    if (r.error) {
      rows.push([label, `**${r.error}**`, '0', '—', '—', '—', '—', '—'])
      continue
    }
    const s = stats(r.samples)
    const res = stats(r.resolved)
    rows.push([label, `${r.samples.length}${r.failures.length ? ` (${r.failures.length} failed)` : ''}`,
      fmt(s.p50), fmt(s.p95), fmt(s.max), fmt(res.p50), String(r.samples.filter((x) => x > 50).length), s.max < 50 ? 'yes' : '**no**'])
    if (r.failures.length) notes.push(`${name} failures: ${[...new Set(r.failures)].join(' | ')}`)
  }
  console.log(`\n## Connect time to other stacks through our signaling server (ms) — ${machineInfo()}\n`)
  console.log(`${CONNECTS} measured connects per stack after ${WARMUP} warm-up connects, each stack in its own process. Timed: our \`connectPeer(id)\` → the first default-channel message arrives at the other stack; "resolved" is \`connectPeer()\` resolving at our side.\n`)
  console.log(markdownTable(['other side', 'connects', 'p50', 'p95', 'max', 'resolved p50', '> 50 ms', 'max < 50 ms'], rows))
  console.log('')
  for (const n of notes) console.log(`- ${n}`)
  stop()
}

const i = process.argv.indexOf('--child')
if (i >= 0) childMain(() => child(process.argv[i + 1]), STACK_BUDGET_MS + 20_000)
else main()
