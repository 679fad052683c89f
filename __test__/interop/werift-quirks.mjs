// werift's deviations that the interop test and the connect benchmark work around (both only
// on 127.0.0.1): its SCTP role taken from the ICE role instead of the DTLS role, and the STUN
// server it always queries and waits for.
import dgram from 'node:dgram'

// aiortc/aiortc#1432 ported to werift: the DTLS client sends INIT (RFC 8832); werift's
// even/odd stream ids (from the ICE role) already agree with the DTLS roles it negotiates.
export function patchWerift(werift) {
  if (werift.RTCSctpTransport.prototype.start.patchedByUs) return
  werift.RTCSctpTransport.prototype.start = async function (remotePort) {
    this.dataChannelId = this.isServer ? 0 : 1
    this.sctp.isServer = this.dtlsTransport.role !== 'client'
    await this.sctp.start(remotePort)
  }
  werift.RTCSctpTransport.prototype.start.patchedByUs = true
}

// A STUN Binding responder on 127.0.0.1 (RFC 5389: XOR-MAPPED-ADDRESS only), so werift's
// server-reflexive gathering ends at once and never leaves the machine.
export async function localStun() {
  const sock = dgram.createSocket('udp4')
  sock.on('message', (m, rinfo) => {
    if (m.length < 20 || m.readUInt16BE(0) !== 0x0001 || m.readUInt32BE(4) !== 0x2112a442) return
    const res = Buffer.alloc(32)
    res.writeUInt16BE(0x0101, 0)
    res.writeUInt16BE(12, 2)
    res.writeUInt32BE(0x2112a442, 4)
    m.copy(res, 8, 8, 20)
    res.writeUInt16BE(0x0020, 20)
    res.writeUInt16BE(8, 22)
    res.writeUInt16BE(0x0001, 24)
    res.writeUInt16BE(rinfo.port ^ 0x2112, 26)
    const ip = rinfo.address.split('.').map(Number)
    res.writeUInt32BE((((ip[0] << 24) | (ip[1] << 16) | (ip[2] << 8) | ip[3]) ^ 0x2112a442) >>> 0, 28)
    sock.send(res, rinfo.port, rinfo.address)
  })
  await new Promise((r) => sock.bind(0, '127.0.0.1', r))
  return { url: `stun:127.0.0.1:${sock.address().port}`, close: () => sock.close() }
}

