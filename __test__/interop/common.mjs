// Shared helpers of the interop matrix (__test__/interop/<peer>.test.mjs, one file per peer):
// tones and their frequency, I420 test pictures, and the per-cell timings each file records
// (connect and first-message times) into target/interop-timings.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'

export const RATE = 48000

// `frames` Float32Array frames of a continuous sine tone (mono, 48 kHz).
export function tone(freq, frames, samplesPerFrame = 960, amplitude = 0.5) {
  let phase = 0
  return Array.from({ length: frames }, () => {
    const f = new Float32Array(samplesPerFrame)
    for (let i = 0; i < f.length; i++) {
      phase += (2 * Math.PI * freq) / RATE
      f[i] = amplitude * Math.sin(phase)
    }
    return f
  })
}

// The frequency of a (mostly) pure tone from its zero crossings.
export function frequency(samples, rate = RATE) {
  let crossings = 0
  for (let i = 1; i < samples.length; i++) if ((samples[i - 1] < 0) !== (samples[i] < 0)) crossings++
  return crossings / 2 / (samples.length / rate)
}

export function rms(samples) {
  let s = 0
  for (const x of samples) s += x * x
  return Math.sqrt(s / samples.length)
}

// One channel of interleaved samples.
export function channel(samples, channels, which = 0) {
  if (channels === 1) return samples
  const out = new Float32Array(Math.floor(samples.length / channels))
  for (let i = 0; i < out.length; i++) out[i] = samples[i * channels + which]
  return out
}

export function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0))
  let o = 0
  for (const c of chunks) {
    out.set(c, o)
    o += c.length
  }
  return out
}

// A moving I420 picture (w × h), different for each i.
export function testPattern(w, h, i) {
  const data = Buffer.alloc((w * h * 3) / 2)
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = (x + y + i * 4) & 0xff
  const sq = Math.min(40, w >> 2, h >> 2)
  const ox = (i * 6) % (w - sq)
  for (let y = sq; y < 2 * sq; y++) for (let x = ox; x < ox + sq; x++) data[y * w + x] = 235
  data.fill(128, w * h)
  return data
}

// Records one cell's timings (ms), e.g. record('werift', 'connect', 12.3): kept in
// target/interop-timings.json as { peer: { what: [ms, ...] } }.
const TIMINGS = new URL('../../target/interop-timings.json', import.meta.url)
export function record(peer, what, ms) {
  let all = {}
  try {
    all = JSON.parse(readFileSync(TIMINGS, 'utf8'))
  } catch {}
  all[peer] ??= {}
  all[peer][what] ??= []
  all[peer][what].push(Math.round(ms * 10) / 10)
  mkdirSync(new URL('.', TIMINGS), { recursive: true })
  writeFileSync(TIMINGS, JSON.stringify(all, null, 2))
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Sends `frames` 20 ms frames of a `freq` tone from transport `t` to `to`, paced in real time.
export async function sendTone(t, to, freq, frames) {
  const start = performance.now()
  for (const [i, f] of tone(freq, frames).entries()) {
    await t.sendAudio(to, f)
    const wait = start + (i + 1) * 20 - performance.now()
    if (wait > 0) await sleep(wait)
  }
}

// Sends `frames` I420 test pictures (w × h, numbered from `from`, the first a keyframe) at
// 30 fps from transport `t` to `to`.
export async function sendVideo(t, to, frames, w = 320, h = 240, from = 0) {
  const start = performance.now()
  for (let i = from; i < from + frames; i++) {
    await t.sendVideo(to, { data: testPattern(w, h, i), width: w, height: h, timestampUs: Math.round(i * 33333), keyframe: i === from })
    const wait = start + (i - from + 1) * 33 - performance.now()
    if (wait > 0) await sleep(wait)
  }
}

// The tone in received audio frames, after the jitter buffer settled (the first quarter skipped).
export function toneOf(frames) {
  return frequency(concat(frames.slice(Math.floor(frames.length / 4)).map((f) => f.samples)))
}
