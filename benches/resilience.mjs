// Resilience benchmarks (issue 6), on real impaired links: a network namespace of its own
// (`unshare -n`, loopback only) with nftables rules dropping UDP datagrams. Needs root, util-linux
// `unshare`, iproute2 and nftables (.ci/run installs them).
//
//   node benches/resilience.mjs            # all three parts, about 3 min
//   BENCH_ONLY=cuts,loss,soak node benches/resilience.mjs
//
// - cuts: 20 two-second cuts of every UDP datagram on one connected pair. A reliable message goes
//   out every 50 ms during each cut (none between cuts: BENCH_CUT_STEADY=1 sends every 50 ms
//   throughout). Recovery = link restored → every message sent during the cut delivered (in
//   order). Goal: 95 % within 3 s. BENCH_CUTS (20), BENCH_CUT_GAP_MS (3000) set the cuts.
// - loss: 5 % and 20 % random loss, audio 20 ms Opus (FEC on) for 10 s plus a reliable stream
//   of 1 KiB messages. Reported: audio continuity (frames out / frames sent, the share concealed)
//   and data-channel goodput.
// - soak: 1 000 connect / first message / close cycles. RSS and open sockets before and after.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const only = (process.env.BENCH_ONLY || 'cuts,loss,soak').split(',')

if (process.env.RESILIENCE_CHILD !== '1') {
  // Re-run this file inside a fresh network namespace.
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" --expose-gc "$1"', process.execPath, self], {
    stdio: 'inherit',
    env: { ...process.env, RESILIENCE_CHILD: '1' },
  })
  if (r.error) throw new Error(`cannot run unshare (root, util-linux and iproute2 needed): ${r.error.message}`)
  process.exit(r.status ?? 1)
}

const { execFileSync } = await import('node:child_process')
const fs = await import('node:fs')
const { loadRemotemedia, percentile, sleep } = await import('./common.mjs')
const { SignalingServer, WebRtcTransport } = loadRemotemedia()

const nft = (rules) => execFileSync('nft', ['-f', '-'], { input: rules })
const dropRule = (match) => nft(`table inet bench {\n chain in { type filter hook input priority 0; policy accept;\n ${match}\n }\n}\n`)
const clearRules = () => { try { nft('delete table inet bench') } catch { /* none */ } }
const sockets = () => fs.readdirSync('/proc/self/fd').filter((f) => {
  try { return fs.readlinkSync(`/proc/self/fd/${f}`).startsWith('socket:') } catch { return false }
}).length
const rssMb = () => process.memoryUsage().rss / 1048576

async function pair(extra = {}) {
  const server = await SignalingServer.listen({ host: '127.0.0.1', port: 0 })
  const opts = { signalingUrl: server.url, bindAddress: '127.0.0.1', connectTimeoutMs: 20000, ...extra }
  const a = new WebRtcTransport({ ...opts, peerId: 'a' })
  const b = new WebRtcTransport({ ...opts, peerId: 'b' })
  await a.start()
  await b.start()
  const close = async () => { await a.shutdown(); await b.shutdown(); await server.close() }
  return { a, b, close }
}

const fmt = (x, d = 0) => (x == null ? '—' : Number(x).toFixed(d))

async function cuts() {
  const CUTS = +(process.env.BENCH_CUTS || 20)
  const { a, b, close } = await pair()
  const got = []
  b.on('data-channel', (ch) => ch.on('message', (m) => got.push(m.data)))
  let events = 0
  for (const e of ['reconnecting', 'reconnect-failed']) a.on(e, () => events++)
  const peer = await a.connectPeer('b')
  const recoveries = []
  let seq = 0
  const GAP = +(process.env.BENCH_CUT_GAP_MS || 3000)
  const steady = process.env.BENCH_CUT_STEADY === '1'
  for (let c = 0; c < CUTS; c++) {
    const gapAt = Date.now()
    if (steady) {
      const between = []
      while (Date.now() - gapAt < GAP) { between.push(peer.defaultChannel.send(`${seq++}`)); await sleep(50) }
      await Promise.all(between)
    } else await sleep(GAP)
    dropRule('meta l4proto udp drop')
    const cutAt = Date.now()
    const sends = []
    while (Date.now() - cutAt < 2000) {
      sends.push(peer.defaultChannel.send(`${seq++}`))
      await sleep(50)
    }
    clearRules()
    const restored = Date.now()
    await Promise.all(sends)
    while (got.length < seq && Date.now() - restored < 30000) await sleep(2)
    recoveries.push(got.length >= seq ? Date.now() - restored : Infinity)
  }
  const inOrder = got.every((m, i) => m === `${i}`) && got.length === seq
  await close()
  const finite = recoveries.filter(Number.isFinite).sort((x, y) => x - y)
  const within3 = recoveries.filter((r) => r <= 3000).length / recoveries.length
  console.log(`\n### Recovery after ${CUTS} two-second cuts (all UDP dropped), ${GAP} ms of link between cuts\n`)
  console.log('| cuts | messages | delivered once, in order | recovery p50 ms | p95 ms | max ms | within 3 s | reconnect events | goal |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  console.log(`| ${CUTS} | ${seq} | ${inOrder ? 'yes' : 'NO'} | ${fmt(percentile(finite, 50))} | ${fmt(percentile(finite, 95))} | ${fmt(Math.max(...recoveries))} | ${fmt(within3 * 100)} % | ${events} | 95 % within 3 s |`)
  console.log(`\nper cut, ms: ${recoveries.map((r) => fmt(r)).join(', ')}`)
}

async function loss() {
  console.log('\n### Audio continuity and goodput under random loss (10 s each)\n')
  console.log('| loss | audio frames sent | frames out | concealed | continuity | data goodput kB/s (1 KiB reliable messages) | measured loss (sender / receiver) |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  for (const pct of [0, 5, 20]) {
    const { a, b, close } = await pair()
    const peer = await a.connectPeer('b')
    await peer.addAudioTrack({ fec: true })
    const pcm = new Float32Array(960).map((_, i) => 0.3 * Math.sin(i / 5))
    for (let i = 0; i < 500; i++) {
      if (await a.sendAudio('b', pcm).then(() => true, () => false)) break
      await sleep(10)
    }
    let frames = 0
    let concealed = 0
    b.getPeer('a').on('audio-frame', (f) => { frames++; if (f.concealed) concealed++ })
    let bytes = 0
    b.getPeer('a').channels.forEach((ch) => ch.on('message', (m) => { bytes += m.data.length }))
    b.on('data-channel', (ch) => ch.on('message', (m) => { bytes += m.data.length }))
    if (pct) dropRule(`meta l4proto udp numgen random mod 100 < ${pct} drop`)
    const t0 = Date.now()
    const payload = Buffer.alloc(1024, 7)
    let dataStop = false
    const data = (async () => {
      while (!dataStop) await peer.defaultChannel.send(payload)
    })()
    const sent = 500
    for (let i = 0; i < sent; i++) {
      await a.sendAudio('b', pcm)
      await sleep(Math.max(0, t0 + (i + 1) * 20 - Date.now()))
    }
    dataStop = true
    await data
    const secs = (Date.now() - t0) / 1000
    await sleep(300)
    const s = peer.getMetrics()
    const r = b.getPeer('a').getMetrics()
    if (pct) clearRules()
    console.log(`| ${pct} % | ${sent} | ${frames} | ${concealed} (${fmt((concealed / sent) * 100, 1)} %) | ${fmt((Math.min(frames, sent) / sent) * 100, 1)} % | ${fmt(bytes / 1000 / secs, 0)} | ${fmt(s.packetLossRate * 100, 1)} % / ${fmt(r.packetLossRate * 100, 1)} % |`)
    await close()
  }
}

async function soak() {
  const CYCLES = +(process.env.BENCH_SOAK || 1000)
  const { a, b, close } = await pair()
  const cycle = async () => {
    const p = await a.connectPeer('b')
    await p.defaultChannel.send('x')
    await a.disconnectPeer('b')
    while (b.listAllPeers().length) await sleep(1)
  }
  for (let i = 0; i < 50; i++) await cycle() // warm-up
  await sleep(200)
  global.gc()
  const base = { rss: rssMb(), sockets: sockets() }
  const t0 = Date.now()
  const marks = []
  for (let i = 1; i <= CYCLES; i++) {
    await cycle()
    if (i % 250 === 0) { global.gc(); marks.push(fmt(rssMb(), 1)) }
  }
  const ms = Date.now() - t0
  // Closed peers' memory is handed back to the system 1 s after they close (peer/trim.rs).
  await sleep(1500)
  global.gc()
  const after = { rss: rssMb(), sockets: sockets() }
  await close()
  console.log(`\n### Soak: ${CYCLES} connect / message / close cycles (after 50 warm-up cycles)\n`)
  console.log('| cycles | time s | RSS before MB | RSS every 250 cycles MB | RSS after MB | change | sockets before / after | goal |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  console.log(`| ${CYCLES} | ${fmt(ms / 1000, 1)} | ${fmt(base.rss, 1)} | ${marks.join(', ')} | ${fmt(after.rss, 1)} | ${fmt(((after.rss - base.rss) / base.rss) * 100, 1)} % | ${base.sockets} / ${after.sockets} | RSS within 10 %, sockets unchanged |`)
}

console.log(`# resilience benchmarks (${new Date().toISOString()}, node ${process.version})`)
if (only.includes('cuts')) await cuts()
if (only.includes('loss')) await loss()
if (only.includes('soak')) await soak()
