package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
)

func TestHTTPClientBearerToken(t *testing.T) {
	const token = "s3cret-token-value"
	var mu sync.Mutex
	var got []string
	headers := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"machines":[]}`))
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var debug bytes.Buffer
	c, err := api.NewHTTPClient(srv.URL, 5*time.Second, api.WithBearerToken(token), api.WithDebugLog(&debug))
	require.NoError(t, err)
	_, err = c.Machines(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"Bearer " + token}, headers())
	require.Contains(t, debug.String(), "DEBUG: GET "+srv.URL+"/fleet/v1/machines?pageSize=65535: 200 OK")
	require.NotContains(t, debug.String(), token)

	// Without the option no Authorization header is sent.
	mu.Lock()
	got = nil
	mu.Unlock()
	c, err = api.NewHTTPClient(srv.URL, 5*time.Second)
	require.NoError(t, err)
	_, err = c.Machines(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{""}, headers())
}
