// Package e2e holds the tests and benchmarks that cross services: contacts
// and calendar (and later notifications) started in one process with their
// Run functions on loopback ports, driven only through HTTP.
package e2e
