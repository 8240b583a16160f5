package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// MachineMetadataOp is one operation of PATCH /fleet/v1/machines, fleet's
// subset of JSON Patch:
//
//	{"op":"add",     "path":"/<machine ID>/metadata/<key>", "value":"<value>"}
//	{"op":"replace", "path":"/<machine ID>/metadata/<key>", "value":"<value>"}
//	{"op":"remove",  "path":"/<machine ID>/metadata/<key>"}
//
// add and replace both set the key; remove deletes it, also when the
// machine's configuration sets it. The value may also come as
// {"value":"<value>"}, as some fleet clients sent it.
type MachineMetadataOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value,omitempty"`
}

// UnmarshalJSON accepts the value as a string or as {"value":"..."}.
func (o *MachineMetadataOp) UnmarshalJSON(b []byte) error {
	var raw struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	o.Op, o.Path, o.Value = raw.Op, raw.Path, ""
	v := bytes.TrimSpace(raw.Value)
	switch {
	case len(v) == 0, bytes.Equal(v, []byte("null")):
	case v[0] == '{':
		var wrapped struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(v, &wrapped); err != nil {
			return fmt.Errorf("value of %s %s: %w", raw.Op, raw.Path, err)
		}
		o.Value = wrapped.Value
	default:
		if err := json.Unmarshal(v, &o.Value); err != nil {
			return fmt.Errorf("value of %s %s: want a string: %w", raw.Op, raw.Path, err)
		}
	}
	return nil
}

// metadataPath is fleet's rule for a metadata operation's path.
var metadataPath = regexp.MustCompile(`^/([^/]+)/metadata/([A-Za-z0-9_.-]+)$`)

// MetadataPath returns the path of a metadata operation on key of machine id.
func MetadataPath(id, key string) string { return "/" + id + "/metadata/" + key }

// parseMetadataOps validates every operation before any is applied, as
// fleet did, and returns them in the registry's terms.
func parseMetadataOps(ops []MachineMetadataOp) ([]registry.MetadataOp, error) {
	out := make([]registry.MetadataOp, 0, len(ops))
	for i, op := range ops {
		m := metadataPath.FindStringSubmatch(op.Path)
		if m == nil {
			return nil, errorf(ErrInvalid, "operation %d: invalid machine metadata path %q; want /<machine ID>/metadata/<key>, the key made of A-Z a-z 0-9 _ . -", i+1, op.Path)
		}
		rop := registry.MetadataOp{Machine: m[1], Key: m[2]}
		switch op.Op {
		case "add", "replace":
			if op.Value == "" {
				return nil, errorf(ErrInvalid, "operation %d: invalid value: %s of %s requires a non-empty value", i+1, op.Op, op.Path)
			}
			rop.Value = op.Value
		case "remove":
			rop.Remove = true
		default:
			return nil, errorf(ErrInvalid, "operation %d: invalid op %q: expect add, remove or replace", i+1, op.Op)
		}
		out = append(out, rop)
	}
	return out, nil
}
