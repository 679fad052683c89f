// Headless Chromium for the suites that run a real browser (Debian's `chromium`, driven with
// playwright-core): one launch with the flags testing.md names, and the two measures the media
// suites share, in both directions over 90 % of what the other side reports.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { expect } from 'vitest'
import { until } from './helpers.mjs'
import { testPattern, sleep } from './signals.mjs'

const require = createRequire(import.meta.url)
const { chromium } = require('playwright-core')
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'

const BASE = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection']
const MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required']

// media: fake camera and microphone (and autoplay); otherwise a plain browser with real host
// candidates (no mDNS names). args: more flags. Fails loudly when Chromium is not installed.
export function launchChromium({ media = true, args = [] } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (.ci/run does)`)
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE, ...(media ? MEDIA : ['--disable-features=WebRtcHideLocalIpsWithMdns']), ...args],
  })
}

// Over `ms`, Node decodes ≥ 90 % of the frames Chromium reports encoding (its outbound-rtp
// framesEncoded, in __test__/pages/media-peer.html), all at width × height.
export async function expectNodeDecodesChromiumsVideo(tab, frames, [width, height], ms = 4000) {
  const before = { sent: (await tab.evaluate(() => window.outboundVideo())).framesEncoded, got: frames.length }
  await sleep(ms)
  const sent = (await tab.evaluate(() => window.outboundVideo())).framesEncoded - before.sent
  const got = frames.length - before.got
  expect(sent).toBeGreaterThan(60)
  expect(got).toBeGreaterThanOrEqual(Math.floor(sent * 0.9))
  for (const f of frames) {
    expect([f.width, f.height]).toEqual([width, height])
    expect(f.data.length).toBe(width * height * 1.5)
  }
  return { sent, got }
}

// Node sends `count` 320x240 test pictures at 30 fps (the first a keyframe); Chromium's
// inbound-rtp stats once it decoded ≥ 90 % of them, or as they are after 5 s more.
export async function sendVideoToChromium(tab, node, browserId, count = 90) {
  await node.sendVideo(browserId, { data: testPattern(320, 240, 0), width: 320, height: 240, keyframe: true })
  for (let i = 1; i < count; i++) {
    await node.sendVideo(browserId, { data: testPattern(320, 240, i), width: 320, height: 240, timestampUs: i * 33333 })
    await sleep(33)
  }
  return until(async () => {
    const s = await tab.evaluate(() => window.inboundVideo())
    return s && s.framesDecoded >= Math.ceil(count * 0.9) && s
  }, 5000).catch(async () => tab.evaluate(() => window.inboundVideo()))
}
