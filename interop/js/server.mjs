#!/usr/bin/env node
// JS rendezvous SERVER for interop tests: @canvas-js/libp2p-rendezvous 0.5.2 on js-libp2p 2.x.
//
//   node server.mjs [--protocol ID]... [--listen MA] [--max-ttl SECONDS]
//                   [--max-limit N] [--db PATH] [--max-streams N]
//
// --protocol may be repeated: the first ID is the one the canvas service registers
// itself, the others are extra handlers for the same service (aliases).
// Default: /rendezvous/1.0.0 only. Use `--protocol /rendezvous/1.0.0
// --protocol /canvas/rendezvous/1.0.0` to serve both.
//
// stdout: exactly one line when ready: {"multiaddr":"/ip4/127.0.0.1/tcp/N/p2p/<id>"}
// stderr: logs (set DEBUG=canvas:rendezvous* for the package's own logs).
// Exits on SIGINT/SIGTERM, or when stdin (a pipe) closes.
import './polyfill.mjs'
import { RendezvousServer, rendezvousServer } from '@canvas-js/libp2p-rendezvous/server'
import { SPEC_PROTOCOL, MAX_STREAMS, log, parseArgs, makeNode, exitOn, shutdown } from './common.mjs'

let node = null
const fire = exitOn((reason) => shutdown(node, reason))

try {
  const args = parseArgs(process.argv.slice(2), { repeatable: ['protocol', 'listen'] })
  const protocols = args.protocol ?? [SPEC_PROTOCOL]
  const listen = args.listen ?? ['/ip4/127.0.0.1/tcp/0']
  const maxStreams = Number(args['max-streams'] ?? MAX_STREAMS)

  const init = {}
  if (args['max-ttl'] !== undefined) init.maxRegistrationTTL = Number(args['max-ttl'])
  if (args['max-limit'] !== undefined) init.maxDiscoverLimit = Number(args['max-limit'])
  if (args.db !== undefined) init.path = args.db

  // The canvas package has no protocol option: the ID is a static class field read
  // in beforeStart(), so set it before the node starts.
  RendezvousServer.protocol = protocols[0]

  node = await makeNode({ listen, services: { rendezvous: rendezvousServer(init) } })
  const svc = node.services.rendezvous

  // Re-register the handler(s) with higher per-connection stream limits (the
  // package registers with the defaults: 32 inbound streams per connection), and
  // add aliases.
  for (const p of protocols) {
    await node.handle(p, svc.handleIncomingStream, {
      maxInboundStreams: maxStreams,
      maxOutboundStreams: maxStreams,
      force: true
    })
  }

  const addrs = node.getMultiaddrs().map(String).filter(a => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/'))
  if (addrs.length === 0) throw new Error('no loopback listen address')
  log(`canvas rendezvous server ${node.peerId} protocols=${JSON.stringify(protocols)} ` +
    `maxTTL=${svc.maxRegistrationTTL} maxLimit=${svc.maxDiscoverLimit} db=${init.path ?? ':memory:'} addrs=${JSON.stringify(addrs)}`)
  node.addEventListener('connection:open', (e) => log(`connection open ${e.detail.remotePeer} ${e.detail.remoteAddr}`))
  node.addEventListener('connection:close', (e) => log(`connection close ${e.detail.remotePeer}`))
  process.stdout.write(JSON.stringify({ multiaddr: addrs[0] }) + '\n')
} catch (err) {
  log('startup failed:', err?.stack ?? String(err))
  fire('startup failure')
  process.exitCode = 1
}
