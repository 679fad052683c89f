// Test signals and their measures, shared by every JS suite: tones (continuous across frames, or
// one repeatable frame), a tone's frequency (zero crossings) and level (RMS, or Goertzel at one
// frequency), I420 test pictures, and paced senders of both over a transport.
export const RATE = 48000
export const FRAME = 960 // 20 ms at 48 kHz

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// A source of a continuous sine tone (mono, 48 kHz): each call returns its next frame.
export function toneSource(freq, samplesPerFrame = FRAME, amplitude = 0.5) {
  let phase = 0
  return () => {
    const f = new Float32Array(samplesPerFrame)
    for (let i = 0; i < f.length; i++) {
      phase += (2 * Math.PI * freq) / RATE
      f[i] = amplitude * Math.sin(phase)
    }
    return f
  }
}

// `frames` Float32Array frames of a continuous sine tone (mono, 48 kHz).
export function tone(freq, frames, samplesPerFrame = FRAME, amplitude = 0.5) {
  const next = toneSource(freq, samplesPerFrame, amplitude)
  return Array.from({ length: frames }, next)
}

// One frame of a tone starting at phase 0 (`n` samples at `rate`): every such frame is the same,
// so it can be sent again and again (continuous when `freq` fits whole cycles into the frame).
export function toneFrame(freq, amplitude = 0.5, n = FRAME, rate = RATE) {
  return Float32Array.from({ length: n }, (_, i) => amplitude * Math.sin((2 * Math.PI * freq * i) / rate))
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

// Goertzel: the amplitude of `freq` in `x`.
export function amplitudeAt(x, freq, rate = RATE) {
  const w = (2 * Math.PI * freq) / rate
  const coeff = 2 * Math.cos(w)
  let s1 = 0
  let s2 = 0
  for (const v of x) {
    const s0 = v + coeff * s1 - s2
    s2 = s1
    s1 = s0
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2
  return (2 * Math.sqrt(Math.max(power, 0))) / x.length
}

// One channel of interleaved samples.
export function channel(samples, channels, which = 0) {
  if (channels === 1) return samples
  const out = new Float32Array(Math.floor(samples.length / channels))
  for (let i = 0; i < out.length; i++) out[i] = samples[i * channels + which]
  return out
}

// Float32Arrays (or received audio frames, by their `samples`) joined into one.
export function concat(chunks) {
  const arrays = chunks.map((c) => (c instanceof Float32Array ? c : c.samples))
  const out = new Float32Array(arrays.reduce((n, c) => n + c.length, 0))
  let o = 0
  for (const c of arrays) {
    out.set(c, o)
    o += c.length
  }
  return out
}

// The tone in received audio frames, after the jitter buffer settled (the first quarter skipped).
export function toneOf(frames) {
  return frequency(concat(frames.slice(Math.floor(frames.length / 4))))
}

// A moving I420 picture (w × h), different for each i: a luma ramp, a white square moving right.
export function testPattern(w, h, i) {
  const data = Buffer.alloc((w * h * 3) / 2)
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = (x + y + i * 4) & 0xff
  const sq = Math.min(40, w >> 2, h >> 2)
  const ox = (i * 6) % (w - sq)
  for (let y = sq; y < 2 * sq; y++) for (let x = ox; x < ox + sq; x++) data[y * w + x] = 235
  data.fill(128, w * h)
  return data
}

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
