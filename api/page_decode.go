package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// getPage GETs one page of a listing and decodes it into out. A page of
// 100,000 rows took encoding/json ~200 ms to scan twice and decode; the v2
// decoder, with encoding/json's semantics (case-insensitive names,
// duplicate names and invalid UTF-8 accepted), takes a fraction of it.
func (c *httpClient) getPage(ctx context.Context, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := jsonv2.UnmarshalRead(resp.Body, out, jsonv1.DefaultOptionsV1()); err != nil {
		return fmt.Errorf("decode answer of fleetd at %s to GET %s: %w", c.endpoint, path, err)
	}
	return nil
}
