// Package iothub is the vocabulary of Azure IoT Hub as it appears on the
// wire: device identities, twins, direct-method requests and results, jobs,
// query pages, the error catalogue and the error envelopes the hub answers
// with.
//
// Every JSON name here is the one the real hub uses; golden files in
// testdata/ pin each shape. The facts come from the project's research notes
// (shared/research/service-api.md, cited below as "service-api §n", and
// shared/research/device-protocol.md, cited as "device-protocol §n").
//
// The package imports only the standard library and does no I/O; the
// emulator, the device client and the service client all build on it.
package iothub
