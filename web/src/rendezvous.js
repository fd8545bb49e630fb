// A minimal client of the libp2p Rendezvous protocol (/rendezvous/1.0.0) on
// js-libp2p's stream API: REGISTER, UNREGISTER and DISCOVER, one request per
// stream, every field written (as the specification's proto2 schema reads
// them), and every discovered record verified before it is shown.
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { lpStream } from 'it-length-prefixed-stream'

/** The protocol ID of the specification. */
export const PROTOCOL = '/rendezvous/1.0.0'

const REGISTER = 0
const REGISTER_RESPONSE = 1
const UNREGISTER = 2
const DISCOVER = 3
const DISCOVER_RESPONSE = 4

/** Status codes of RegisterResponse and DiscoverResponse, by number. */
export const STATUS = {
  0: 'OK',
  100: 'E_INVALID_NAMESPACE',
  101: 'E_INVALID_SIGNED_PEER_RECORD',
  102: 'E_INVALID_TTL',
  103: 'E_INVALID_COOKIE',
  200: 'E_NOT_AUTHORIZED',
  300: 'E_INTERNAL_ERROR',
  400: 'E_UNAVAILABLE'
}

/** The point answered with a status other than OK. */
export class RefusedError extends Error {
  constructor (request, status, text) {
    const name = STATUS[status] ?? `status ${status}`
    super(`the point refused the ${request}: ${name}${text ? ` (${text})` : ''}`)
    this.name = 'RefusedError'
    this.status = name
    this.statusText = text
  }
}

// ---- protobuf, the few shapes the protocol has ----

const utf8 = new TextEncoder()
const fromUTF8 = new TextDecoder()

function varint (n) {
  const out = []
  let v = BigInt(n)
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) b |= 0x80
    out.push(b)
  } while (v > 0n)
  return out
}

// field encodes one field: a number as a varint, bytes and strings
// length-delimited.
function field (num, value) {
  if (typeof value === 'number' || typeof value === 'bigint') {
    return [...varint((num << 3) | 0), ...varint(value)]
  }
  const bytes = typeof value === 'string' ? utf8.encode(value) : value
  return [...varint((num << 3) | 2), ...varint(bytes.length), ...bytes]
}

function message (type, num, fields) {
  return Uint8Array.from([...field(1, type), ...field(num, Uint8Array.from(fields.flat()))])
}

// decode reads a message into {fieldNumber: [values]}: varints as BigInt,
// length-delimited fields as Uint8Array.
function decode (buf) {
  const out = {}
  let i = 0
  const readVarint = () => {
    let v = 0n
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= buf.length) throw new Error('truncated message')
      const b = buf[i++]
      v |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return v
    }
    throw new Error('varint too long')
  }
  while (i < buf.length) {
    const key = Number(readVarint())
    const num = key >> 3
    let value
    switch (key & 7) {
      case 0: value = readVarint(); break
      case 2: {
        const n = Number(readVarint())
        if (i + n > buf.length) throw new Error('truncated message')
        value = buf.subarray(i, i + n)
        i += n
        break
      }
      case 1: i += 8; continue
      case 5: i += 4; continue
      default: throw new Error(`unknown wire type ${key & 7}`)
    }
    ;(out[num] ??= []).push(value)
  }
  return out
}

const one = (m, n) => m[n]?.[m[n].length - 1]

// ---- requests ----

async function request (node, point, bytes, { answer = true, signal } = {}) {
  const stream = await node.dialProtocol(point, PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: 1 << 20 })
    await lp.write(bytes, { signal })
    if (!answer) {
      await stream.close({ signal })
      return null
    }
    const res = decode((await lp.read({ signal })).subarray())
    await stream.close({ signal })
    return res
  } catch (err) {
    stream.abort(err)
    throw err
  }
}

/**
 * register signs a peer record of addrs with privateKey and registers it in
 * ns for ttl seconds. It returns the TTL the point granted, in seconds.
 */
export async function register (node, point, privateKey, ns, ttl, addrs, options = {}) {
  const record = new PeerRecord({ peerId: node.peerId, multiaddrs: addrs })
  const envelope = await RecordEnvelope.seal(record, privateKey)
  const req = message(REGISTER, 2, [field(1, ns), field(2, envelope.marshal()), field(3, ttl)])
  const res = await request(node, point, req, options)
  const r = one(res, 3)
  if (Number(one(res, 1) ?? 0n) !== REGISTER_RESPONSE || r == null) {
    throw new Error('the point did not answer the REGISTER with a REGISTER_RESPONSE')
  }
  const rr = decode(r)
  const status = Number(one(rr, 1) ?? 0n)
  if (status !== 0) {
    throw new RefusedError('REGISTER', status, rr[2] ? fromUTF8.decode(one(rr, 2)) : '')
  }
  return Number(one(rr, 3) ?? BigInt(ttl))
}

/** unregister removes this peer's registration in ns; the point sends no answer. */
export async function unregister (node, point, ns, options = {}) {
  await request(node, point, message(UNREGISTER, 4, [field(1, ns)]), { ...options, answer: false })
}

/**
 * discover asks for at most limit registrations in ns and returns those
 * whose signed record verifies and is signed by its own peer:
 * [{peerId, multiaddrs, ttl, seq}].
 */
export async function discover (node, point, ns, limit, options = {}) {
  const res = await request(node, point, message(DISCOVER, 5, [field(1, ns), field(2, limit)]), options)
  const r = one(res, 6)
  if (Number(one(res, 1) ?? 0n) !== DISCOVER_RESPONSE || r == null) {
    throw new Error('the point did not answer the DISCOVER with a DISCOVER_RESPONSE')
  }
  const dr = decode(r)
  const status = Number(one(dr, 3) ?? 0n)
  if (status !== 0) {
    throw new RefusedError('DISCOVER', status, dr[4] ? fromUTF8.decode(one(dr, 4)) : '')
  }
  const found = []
  for (const raw of dr[1] ?? []) {
    const reg = decode(raw)
    if (reg[1] && fromUTF8.decode(one(reg, 1)) !== ns) continue
    try {
      const env = await RecordEnvelope.openAndCertify(one(reg, 2), PeerRecord.DOMAIN)
      const rec = PeerRecord.createFromProtobuf(env.payload)
      if (!peerIdFromPublicKey(env.publicKey).equals(rec.peerId)) continue
      found.push({ peerId: rec.peerId, multiaddrs: rec.multiaddrs, seq: rec.seqNumber, ttl: Number(one(reg, 3) ?? 0n) })
    } catch {
      // a record that does not verify is not shown
    }
  }
  return found
}
