// Package pb holds the protobuf messages of the Rendezvous protocol,
// generated from rendezvous.proto.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative rendezvous.proto
