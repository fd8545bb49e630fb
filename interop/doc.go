// Package interop holds the tests that prove wire compatibility with other
// implementations of the Rendezvous protocol, driving them as child
// processes. The JavaScript side (@canvas-js/libp2p-rendezvous on js-libp2p
// 2.x) is in js/; js/setup.sh installs it.
package interop
