// Package whatsapp is the boundary between the appliance and the WhatsApp
// network. It owns the Driver/Transport/Handler interfaces and their
// implementations in subpackages (sandbox: a simulated network; whatsmeow: the
// real one). Nothing outside this package tree knows how messages travel, so
// the sandbox can stand in for WhatsApp in tests and benchmarks without any
// "if sandbox" elsewhere. It must not import storage or HTTP code.
package whatsapp
