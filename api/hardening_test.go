package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api/auth"
)

func TestRequestBodyLimit(t *testing.T) {
	h := NewServer(notFoundClient{})
	big := `{"name":"big.service","options":[{"section":"Service","name":"ExecStart","value":"` + strings.Repeat("x", maxRequestBody) + `"}]}`
	tests := []struct {
		name, method, path, msg string
		chunked                 bool
	}{
		{"unit file", "PUT", "/fleet/v1/units/big.service", "unit file larger than 1 MiB: the request body may be at most 1048576 bytes", false},
		{"unit file without length", "PUT", "/fleet/v1/units/big.service", "unit file larger than 1 MiB: the request body may be at most 1048576 bytes", true},
		{"metadata", "PATCH", "/fleet/v1/machines", "machine metadata patch larger than 1 MiB: the request body may be at most 1048576 bytes", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(big))
			if tt.chunked {
				r.ContentLength = -1
			}
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
			var e errorBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
			require.Equal(t, errorEntity{Code: 413, Message: tt.msg}, e.Error)
		})
	}
	// Just below the limit the body is read (and here refused for another
	// reason: the unit does not exist and the stub cannot create it).
	small := `{"name":"big.service","options":[{"section":"Service","name":"ExecStart","value":"` + strings.Repeat("x", maxRequestBody-200) + `"}]}`
	w := httptest.NewRecorder()
	r := httptest.NewRequest("PUT", "/fleet/v1/units/big.service", strings.NewReader(small))
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusNotFound, w.Code, w.Body.String())
}

// tickingClient streams an event every 10 ms until the stream's ctx ends.
type tickingClient struct{ notFoundClient }

func (tickingClient) Events(ctx context.Context, fn func(Event) error) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if err := fn(Event{Type: "tick"}); err != nil {
			return err
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// openEvents opens an event stream with a bearer token and returns the
// answer (the caller closes its body).
func openEvents(t *testing.T, ctx context.Context, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/fleet/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

func TestEventStreamsPerCaller(t *testing.T) {
	toks, err := auth.ParseTokens(strings.NewReader("a read token-a\nb read token-b\n"))
	require.NoError(t, err)
	srv := httptest.NewServer(Authorize(auth.NewAuthenticator(toks, false), NewServer(tickingClient{}, WithMaxEventStreams(2))))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ctx1, cancel1 := context.WithCancel(ctx)
	s1 := openEvents(t, ctx1, srv.URL, "token-a")
	require.Equal(t, 200, s1.StatusCode)
	s2 := openEvents(t, ctx, srv.URL, "token-a")
	require.Equal(t, 200, s2.StatusCode)
	defer s2.Body.Close()

	s3 := openEvents(t, ctx, srv.URL, "token-a")
	require.Equal(t, http.StatusTooManyRequests, s3.StatusCode)
	b, err := io.ReadAll(s3.Body)
	require.NoError(t, err)
	require.JSONEq(t, `{"error":{"code":429,"message":"a has 2 event streams open, the most one caller may; close one before opening another"}}`, string(b))

	other := openEvents(t, ctx, srv.URL, "token-b")
	require.Equal(t, 200, other.StatusCode, "the cap is per caller")
	defer other.Body.Close()

	// A closed stream frees its place once the server notices.
	cancel1()
	s1.Body.Close()
	require.Eventually(t, func() bool {
		s := openEvents(t, ctx, srv.URL, "token-a")
		defer s.Body.Close()
		return s.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond)
}

// TestStreamsOutliveServerTimeouts checks that the http.Server's read and
// write timeouts, meant for ordinary requests, do not cut a stream.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	srv := httptest.NewUnstartedServer(NewServer(tickingClient{}))
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/fleet/v1/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	start := time.Now()
	n := 0
	for time.Since(start) < 5*srv.Config.WriteTimeout {
		require.True(t, sc.Scan(), "stream cut after %s, %d events: %v", time.Since(start), n, sc.Err())
		n++
	}
}
