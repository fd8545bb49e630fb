// Package rendezvous holds what the client and the server of the libp2p
// Rendezvous protocol (/rendezvous/1.0.0) share: protocol IDs, typed response
// statuses and errors, the validation of namespaces, TTLs and signed peer
// records, and the cookie format.
//
// The rendezvous point lives in package server, its storage in package store
// and the client in package client.
package rendezvous
