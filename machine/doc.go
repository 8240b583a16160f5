// Package machine describes a fleet machine: its ID, public IP and metadata,
// and discovers them on the local host (/etc/machine-id, the default-route
// interface). It knows nothing of etcd; presence is the registry's concern.
package machine
